/**
 * A node killed mid-call and back under the same node ID before the others notice its death (a
 * container restarted by Kubernetes keeps its hostname): requests pending on its old run are rejected
 * as soon as the new run announces itself (mixins/node-restart.middleware.ts) and retried on it,
 * instead of waiting out their whole timeout. Real processes over a real nats-server; the unit test
 * (test/unit/node-restart.spec.ts) covers the middleware's cases.
 */
import { startNode, eventually, type ShopNode } from "../helpers/cluster";
import { HttpClient } from "../helpers/http";

jest.setTimeout(90_000);

const ns = `node-restart-${Date.now()}`;
// Long enough that neither a timeout nor a missed heartbeat ends the pending request in this test:
// only the new run can.
const env = { REQUEST_TIMEOUT: "30000", HEARTBEAT_INTERVAL: "2", HEARTBEAT_TIMEOUT: "25", RATE_LIMIT: "0", AUTH_RATE_LIMIT: "0" };
let products: ShopNode;
let gateway: ShopNode;

beforeAll(async () => {
	[products, gateway] = await Promise.all([
		startNode({ nodeID: "products-1", services: ["products"], namespace: ns, env }),
		startNode({ nodeID: "gw-1", services: ["api"], namespace: ns, env }),
	]);
});

afterAll(async () => {
	await Promise.all([products?.kill("SIGKILL"), gateway?.kill()]);
});

test("a request pending on a killed node is answered by its new run, long before its timeout", async () => {
	const http = new HttpClient(`http://127.0.0.1:${gateway.port}`);
	// A product page that is not there: not in the gateway's response cache, answered by products every time.
	const path = `/api/products/not-there-${Date.now()}`;
	await eventually(async () => (await http.get(path)).status === 404, 20_000);

	// The process stops answering (it has the request, as a node that dies mid-call), then dies.
	products.proc.kill("SIGSTOP");
	const sentAt = Date.now();
	const pending = http.get(path);
	await new Promise((r) => setTimeout(r, 500));
	await products.kill("SIGKILL");
	products = await startNode({ nodeID: "products-1", services: ["products"], namespace: ns, env: { ...env, DATA_DIR: products.dataDir } });
	const backAt = Date.now();

	const res = await pending;
	const answeredAt = Date.now();
	// Before: the request waited for its 30 s timeout (the new run's heartbeats kept the node "alive"),
	// then failed with 504.
	expect({ status: res.status, body: res.body }).toMatchObject({ status: 404, body: { type: "NOT_FOUND" } });
	expect(answeredAt - backAt).toBeLessThan(5000);
	expect(answeredAt - sentAt).toBeLessThan(20_000);
	expect(gateway.output()).toMatch(/Node 'products-1' restarted \(a new run under the same node ID\)/);
});
