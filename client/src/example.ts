// The README's tour with the typed client: register, log in, become a
// provider, publish a listing and find it. Run against a local server
// (`cargo run --release`), after `npm run build`:
//   node dist/example.js http://127.0.0.1:8080/graphql
import { AgoraClient, AgoraRequestError } from "./client.js";
import {
  BecomeProviderDocument,
  CreateListingDocument,
  LoginDocument,
  RegisterDocument,
  SearchListingsDocument,
} from "./gql/graphql.js";

const url = process.argv[2] ?? "http://127.0.0.1:8080/graphql";
const anonymous = new AgoraClient({ url });
const email = `ada+${Date.now()}@example.org`;
const password = "correct horse battery";

await anonymous.request(RegisterDocument, { input: { email, password } });
const { login } = await anonymous.request(LoginDocument, { input: { email, password } });
const ada = anonymous.withToken(login.accessToken);

const { becomeProvider } = await ada.request(BecomeProviderDocument, {
  input: { displayName: "Ada", bio: "Rust reviewer", region: "eu", languages: ["en"] },
});
console.log(`provider ${becomeProvider.provider.id}`);

const { createListing } = await ada.request(CreateListingDocument, {
  input: {
    title: "Rust code review",
    description: "An hour with an experienced reviewer.",
    category: "expert-session",
    tags: ["rust", "review"],
    region: "eu",
    asset: "BTC",
    pricing: { fixed: { asset: "BTC", amount: "50000" } },
    deliveryWindowHours: 48,
    publish: true,
  },
});
console.log(`listing ${createListing.listing.id} is ${createListing.listing.status}`);

const { listings } = await anonymous.request(SearchListingsDocument, {
  filter: { text: "rust", priceMax: "100000" },
  orderBy: "PRICE_ASC",
  first: 5,
});
for (const { node } of listings.edges) {
  const price = node.pricing.__typename === "FixedPricing" ? `${node.pricing.amount} ${node.pricing.asset}` : "metered";
  console.log(`${node.title} by ${node.provider.displayName}: ${price}`);
}

try {
  await anonymous.request(CreateListingDocument, { input: { ...createListingInputWithoutTitle() } });
} catch (e) {
  if (e instanceof AgoraRequestError) console.log(`refused as expected: ${e.errors[0]?.extensions.code}`);
  else throw e;
}

function createListingInputWithoutTitle() {
  return {
    title: "",
    description: "x",
    category: "expert-session",
    region: "eu",
    asset: "BTC" as const,
    pricing: { fixed: { asset: "BTC" as const, amount: "1" } },
    deliveryWindowHours: 1,
  };
}
