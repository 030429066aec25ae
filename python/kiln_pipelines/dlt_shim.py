"""Python pipeline sources: `import dlt` and `from pyspark import pipelines as dp`.
(Registration of Python datasets is not wired yet: see the README.)"""


class Registry:
    def __init__(self, worker):
        self.worker = worker

    def register(self, libraries, configuration):
        raise NotImplementedError("Python pipeline sources are not supported yet")


def call_flow(worker, ref, inputs):
    raise NotImplementedError("Python pipeline sources are not supported yet")
