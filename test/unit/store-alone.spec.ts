/**
 * Whether a node may finish at start everything a crash left half done in its store: only when no
 * other process can be working on that data.
 */
import type { ServiceBroker } from "moleculer";
import { aloneOnItsStore } from "../../mixins/db.mixin";

describe("aloneOnItsStore", () => {
	const saved = process.env.MONGO_URI;
	afterEach(() => {
		if (saved === undefined) delete process.env.MONGO_URI;
		else process.env.MONGO_URI = saved;
	});
	const broker = (transit: boolean) => ({ transit: transit ? {} : undefined }) as unknown as ServiceBroker;

	test.each([
		[false, undefined, true], // the single-process default
		[true, undefined, true], // a cluster node on its own embedded store (locked to this process)
		[false, "mongodb://127.0.0.1/shop", true], // no other node to share the database with
		[true, "mongodb://127.0.0.1/shop", false], // another node of the service may be mid-way on the same data
		[true, "", true], // an empty MONGO_URI is unset: embedded
	])("transporter %s, MONGO_URI %p: %s", (transit, mongoUri, alone) => {
		if (mongoUri === undefined) delete process.env.MONGO_URI;
		else process.env.MONGO_URI = mongoUri;
		expect(aloneOnItsStore(broker(transit))).toBe(alone);
	});
});
