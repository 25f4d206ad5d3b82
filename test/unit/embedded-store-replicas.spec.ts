import { embeddedStoreRival, type HostedService } from "../../lib/embedded-store-replicas";

const self = { name: "products", nodeID: "catalog-b", since: 2_000 };
const hosted = (nodeID: string, since?: number, name = "products"): HostedService => ({ name, nodeID, metadata: since === undefined ? {} : { embeddedStore: { since } } });

describe("embeddedStoreRival", () => {
	test.each([
		["an older node with the same service on its embedded store", [hosted("catalog-a", 1_000)], "catalog-a"],
		["a node started at the same moment whose id sorts first", [hosted("catalog-a", 2_000)], "catalog-a"],
		["a node started at the same moment whose id sorts after", [hosted("catalog-c", 2_000)], null],
		["a younger node (it gives way, not this one)", [hosted("catalog-a", 3_000)], null],
		["the same service on MongoDB (no mark)", [hosted("catalog-a")], null],
		["another service on the embedded store", [hosted("catalog-a", 1_000, "search")], null],
		["this node itself, as the registry lists it", [hosted("catalog-b", 1_000)], null],
		["a mark without a start time", [{ name: "products", nodeID: "catalog-a", metadata: { embeddedStore: {} as any } }], null],
		["nothing else", [], null],
	])("%s", (_what, services, rival) => {
		expect(embeddedStoreRival(self, services)?.nodeID ?? null).toBe(rival);
	});

	test("both nodes agree on which one gives way", () => {
		const a = { name: "orders", nodeID: "n1", since: 5 };
		const b = { name: "orders", nodeID: "n2", since: 5 };
		const listed = [hosted("n1", 5, "orders"), hosted("n2", 5, "orders")];
		expect([embeddedStoreRival(a, listed), embeddedStoreRival(b, listed)?.nodeID]).toEqual([null, "n1"]);
	});
});
