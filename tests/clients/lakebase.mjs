// @databricks/lakebase against Kiln's Postgres proxy, configured only through
// the environment the README shows (PGHOST, PGPORT, PGDATABASE, PGUSER,
// LAKEBASE_ENDPOINT, DATABRICKS_HOST/TOKEN, NODE_EXTRA_CA_CERTS). Prints JSON.
import { createLakebasePool } from "@databricks/lakebase";

const pool = createLakebasePool();
try {
  const result = await pool.query("SELECT current_user AS who, 40 + 2 AS answer");
  console.log(JSON.stringify(result.rows[0]));
} finally {
  await pool.end();
}
