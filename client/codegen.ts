// GraphQL Code Generator: typed documents for every operation in operations/,
// generated from the committed schema (no running server needed).
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["operations/**/*.graphql"],
  ignoreNoDocuments: false,
  // ES module imports with `.js` extensions, as NodeNext resolution wants.
  emitLegacyCommonJSImports: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { MinorUnits: "string", DateTime: "string", ID: "string" },
      },
    },
  },
};

export default config;
