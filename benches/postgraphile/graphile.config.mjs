// PostGraphile v5 serving Agora's own PostgreSQL database, for the side-by-side
// benchmark only (benches/run.sh). Amber preset + simplify-inflection + connection-filter,
// production settings: no GraphiQL, no schema watching, no explain.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { PgSimplifyInflectionPreset } from "@graphile/simplify-inflection";
import { PostGraphileConnectionFilterPreset } from "postgraphile-plugin-connection-filter";
import { makePgService } from "postgraphile/adaptors/pg";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is required");

export default {
  extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset, PostGraphileConnectionFilterPreset],
  pgServices: [makePgService({ connectionString: url, schemas: ["public"], poolConfig: { max: Number(process.env.PG_POOL_MAX || 10) } })],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.PORT || 5678),
    graphqlPath: "/graphql",
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};
