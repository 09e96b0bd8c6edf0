// A small typed client for Agora's GraphQL API over HTTP. Every operation in
// operations/ becomes a typed document in ./gql (generated: `npm run codegen`);
// `request` takes one and returns its typed result.
import { print } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";

/** One GraphQL error as Agora returns it: always with a stable `extensions.code`. */
export interface AgoraError {
  message: string;
  path?: ReadonlyArray<string | number>;
  extensions: { code: string; field?: string; reason?: string; retryAfterSeconds?: number };
}

/** Thrown when a response carries errors; `errors[0].extensions.code` says why. */
export class AgoraRequestError extends Error {
  constructor(
    readonly status: number,
    readonly errors: AgoraError[],
  ) {
    super(errors.map((e) => `${e.extensions.code}: ${e.message}`).join("; "));
  }
}

export interface ClientOptions {
  /** The GraphQL endpoint, e.g. http://127.0.0.1:8080/graphql. */
  url: string;
  /** The access token from `login`, sent as `Authorization: Bearer …`. */
  accessToken?: string;
  fetch?: typeof fetch;
}

export class AgoraClient {
  constructor(private options: ClientOptions) {}

  /** A client for the same server with another access token. */
  withToken(accessToken: string): AgoraClient {
    return new AgoraClient({ ...this.options, accessToken });
  }

  async request<Result, Variables>(
    document: TypedDocumentNode<Result, Variables>,
    ...[variables]: Variables extends Record<string, never> ? [] : [Variables]
  ): Promise<Result> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
    };
    if (this.options.accessToken) headers.authorization = `Bearer ${this.options.accessToken}`;
    const response = await (this.options.fetch ?? fetch)(this.options.url, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: print(document), variables: variables ?? {} }),
    });
    const body = (await response.json()) as { data?: Result | null; errors?: AgoraError[] };
    if (body.errors && body.errors.length > 0) throw new AgoraRequestError(response.status, body.errors);
    if (body.data === undefined || body.data === null) {
      throw new AgoraRequestError(response.status, [
        { message: "the response has no data", extensions: { code: "INTERNAL" } },
      ]);
    }
    return body.data;
  }
}

export * from "./gql/graphql.js";
export { graphql } from "./gql/index.js";
