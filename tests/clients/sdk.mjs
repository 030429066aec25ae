// The JS SDK against Kiln: list clusters, run a Python command on one.
// Reads DATABRICKS_HOST / DATABRICKS_TOKEN; argv: cluster id. Prints JSON.
import { WorkspaceClient } from "@databricks/sdk-experimental";

const clusterId = process.argv[2];
const w = new WorkspaceClient({});
const ids = [];
for await (const c of w.clusters.list({})) ids.push(c.cluster_id);
const created = await w.commandExecution.create({ clusterId, language: "python" });
const ctx = await created.wait();
const run = await w.commandExecution.execute({
  clusterId,
  contextId: ctx.id,
  language: "python",
  command: "print(6 * 7)",
});
const done = await run.wait();
await w.commandExecution.destroy({ clusterId, contextId: ctx.id });
console.log(JSON.stringify({ listed: ids.includes(clusterId), status: done.status, data: done.results?.data }));
