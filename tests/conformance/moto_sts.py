"""moto's server, with AssumeRole session policies evaluated (a test double of AWS).

moto checks an assumed role's own policies but ignores the session policy passed to
AssumeRole; AWS allows a request only if both allow it. This wrapper adds that: when
the caller's credentials come from an AssumeRole with a policy, the policy must allow
the action on the resource too. moto passes no S3 condition keys (`s3:prefix`), so a
statement's conditions are not evaluated here (on AWS they narrow listings further).
moto's own SigV4 check computes a different canonical query than object_store and s3fs
send (`%2F` in a listing's prefix), so signatures are not compared; the access key must
still exist (and its session token match), and its policies are what this test is about.
Run as `python moto_sts.py -H 127.0.0.1 -p PORT`."""

import json
import sys

from moto.iam import access_control as ac
from moto.server import main
from moto.sts.models import sts_backends

_init = ac.AssumedRoleAccessKey.__init__
_check = ac.IAMRequestBase.check_action_permitted


def _init_with_policy(self, account_id, partition, access_key_id, headers):
    _init(self, account_id, partition, access_key_id, headers)
    self.session_policy = next((r.policy for r in sts_backends[account_id][partition].assumed_roles
                                if r.access_key_id == access_key_id), None)  # fmt: skip


def _check_with_session_policy(self, resource):
    _check(self, resource)
    policy = getattr(self._access_key, "session_policy", None)
    if policy:
        document = json.loads(policy)
        for statement in document["Statement"]:
            statement.pop("Condition", None)
        if ac.IAMPolicy(json.dumps(document)).is_action_permitted(self._action, resource) != ac.PermissionResult.PERMITTED:
            self._raise_access_denied()


ac.AssumedRoleAccessKey.__init__ = _init_with_policy
ac.IAMRequestBase.check_signature = lambda self: None
ac.IAMRequestBase.check_action_permitted = _check_with_session_policy

if __name__ == "__main__":
    main(sys.argv[1:])
