import { embeddedStoreRival, type HostedService } from "../../lib/embedded-store-replicas";

const self = { name: "products", nodeID: "catalog-b", since: 2_000, embedded: true };
const hosted = (nodeID: string, since?: number, name = "products", embedded = true): HostedService => ({ name, nodeID, metadata: since === undefined ? {} : { store: { since, embedded } } });

describe("embeddedStoreRival", () => {
	test.each([
		["an older node with the same service on its embedded store", [hosted("catalog-a", 1_000)], "catalog-a"],
		["an older node with the same service on MongoDB (this one on its own files)", [hosted("catalog-a", 1_000, "products", false)], "catalog-a"],
		["a node started at the same moment whose id sorts first", [hosted("catalog-a", 2_000)], "catalog-a"],
		["a node started at the same moment whose id sorts after", [hosted("catalog-c", 2_000)], null],
		["a younger node (it gives way, not this one)", [hosted("catalog-a", 3_000)], null],
		["a node that announces nothing (an older build)", [hosted("catalog-a")], null],
		["another service on the embedded store", [hosted("catalog-a", 1_000, "search")], null],
		["this node itself, as the registry lists it", [hosted("catalog-b", 1_000)], null],
		["a mark without a start time", [{ name: "products", nodeID: "catalog-a", metadata: { store: { embedded: true } as any } }], null],
		["nothing else", [], null],
	])("%s", (_what, services, rival) => {
		expect(embeddedStoreRival(self, services)?.nodeID ?? null).toBe(rival);
	});

	test("nodes that all share MongoDB may host the same service; one on its own files among them gives way or wins by age", () => {
		const onMongo = { ...self, embedded: false };
		expect(embeddedStoreRival(onMongo, [hosted("catalog-a", 1_000, "products", false)])).toBeNull();
		expect(embeddedStoreRival(onMongo, [hosted("catalog-a", 1_000, "products", true)])?.nodeID).toBe("catalog-a");
		expect(embeddedStoreRival(onMongo, [hosted("catalog-c", 3_000, "products", true)])).toBeNull();
	});

	test("both nodes agree on which one gives way", () => {
		const a = { name: "orders", nodeID: "n1", since: 5, embedded: true };
		const b = { name: "orders", nodeID: "n2", since: 5, embedded: false };
		const listed = [hosted("n1", 5, "orders", true), hosted("n2", 5, "orders", false)];
		expect([embeddedStoreRival(a, listed), embeddedStoreRival(b, listed)?.nodeID]).toEqual([null, "n1"]);
	});
});
