/** A MongoDB that cannot be reached at start: the error names MONGO_URI, the hosts and the cause, never the password. */
import { Collection, mongoHosts } from "../../mixins/collection";

jest.mock("moleculer-db-adapter-mongoose", () =>
	jest.fn().mockImplementation(() => ({
		init: () => undefined,
		async connect() {
			// As mongoose reports it, then the adapter's own message, which says neither where nor why.
			require("mongoose").connection.emit("error", new Error("connect ECONNREFUSED 10.0.0.7:27017"));
			throw new Error('MongoDB connection failed . Status is "disconnected"');
		},
	})),
);

describe("connecting to MongoDB", () => {
	test("a failure names MONGO_URI, the hosts and mongoose's cause, and hides the credentials", async () => {
		const items = new Collection("items_unreachable", { fields: { sku: String } }, { mongoUri: "mongodb://shop:s3cr/et@10.0.0.7:27017,10.0.0.8/shop?replicaSet=rs0" });
		const err = await items.connect().then(
			() => null,
			(e: Error) => e,
		);
		expect(err?.message).toBe("MONGO_URI: connecting to MongoDB at 10.0.0.7:27017,10.0.0.8 failed: connect ECONNREFUSED 10.0.0.7:27017");
		expect(err?.message).not.toMatch(/s3cr|shop:/);
	});

	test.each([
		["mongodb://db:27017/shop", "db:27017"],
		["mongodb+srv://user:pw@cluster0.example.net/shop?retryWrites=true", "cluster0.example.net"],
		["mongodb://u:p@h1,h2:27018", "h1,h2:27018"],
		["mongodb:///shop", "(no host)"],
	])("%s: the hosts are %s", (uri, hosts) => expect(mongoHosts(uri)).toBe(hosts));
});
