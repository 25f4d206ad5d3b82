/**
 * "Nothing lost when a node dies", in a cluster: while buyers check out, one node is killed with
 * SIGKILL and started again on its own files, and the buyers retry with their Idempotency-Keys. The
 * other nodes go on meanwhile, which a single process cannot show: products keeps the reservations
 * of checkouts whose orders node died, orders finds its products node gone mid-saga. Each buyer must
 * end with one confirmed order, and the stored files of every node pass the audit the load test uses
 * (bench/lib/audit.ts): stock, payments, promotion uses and notifications.
 */
import crypto from "node:crypto";
import path from "node:path";
import { startNode, eventually, redisUrl, type ShopNode } from "../helpers/cluster";
import { HttpClient } from "../helpers/http";
import { registerCustomer, login, addToCart, checkout, createProduct, type Customer } from "../helpers/flows";
import { audit, type AuditInput } from "../../bench/lib/audit";
import { readStoredData } from "../../bench/lib/stored-data";
import { DIST } from "../../bench/lib/processes";

jest.setTimeout(240_000);

const ns = `cluster-crash-${Date.now()}`;
const ADMIN = { email: "crash-ops@example.com", password: "a long admin passphrase" };
const BUYERS = 12;
const STOCK = 100;
const SERVICES: Record<string, string[]> = {
	"users-1": ["users"],
	"products-1": ["products"],
	"checkout-1": ["orders", "payments", "cart"],
	"consumers-1": ["notifications", "analytics", "reviews"],
	"gw-1": ["api"],
};
const common = { REDIS_URL: redisUrl(), RATE_LIMIT: "0", AUTH_RATE_LIMIT: "0" };

const nodes: Record<string, ShopNode> = {};
let gw: HttpClient;
let adminToken: string;
const answers: AuditInput["answers"] = [];
const startStock = new Map<string, number>();

async function start(nodeID: string, env: Record<string, string> = {}) {
	nodes[nodeID] = await startNode({ nodeID, services: SERVICES[nodeID], namespace: ns, env: { ...common, ...env } });
	return nodes[nodeID];
}

/** SIGKILL, then the same node on the same files. */
async function killAndRestart(nodeID: string, afterMs: number) {
	await new Promise((r) => setTimeout(r, afterMs));
	const { dataDir } = nodes[nodeID];
	killedAt = Date.now();
	await nodes[nodeID].kill("SIGKILL");
	await start(nodeID, { DATA_DIR: dataDir, ...(nodeID === "users-1" ? { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } : {}) });
}

/** When the current test's node was killed, and when each buyer had its final answer. */
let killedAt = Infinity;
let answeredAt: number[] = [];

/** The buyer retries with the same key until the checkout has an answer that is not "try again". */
async function checkoutUntilAnswered(buyer: Customer, key: string, deadlineMs: number) {
	const deadline = Date.now() + deadlineMs;
	for (;;) {
		let res: { status: number; body: any } | null = null;
		try {
			res = await checkout(gw, buyer, key);
		} catch {
			/* connection dropped */
		}
		const retry = !res || res.status >= 500 || (res.status === 409 && /IN_PROGRESS/.test(res.body?.type ?? ""));
		if (!retry || Date.now() > deadline) {
			answeredAt.push(Date.now());
			answers.push({ userId: buyer.userId, key, status: res?.status ?? 0, orderId: res?.body?.id, type: res?.body?.type });
			return res;
		}
		await new Promise((r) => setTimeout(r, 250));
	}
}

/** Buyers with one unit each in their carts, all checking out at once while `nodeID` dies and comes back. */
async function checkoutsThroughAKill(nodeID: string, killAfterMs: number) {
	const { variantId } = await createProduct(gw, adminToken, { name: `Crash ${nodeID} ${crypto.randomBytes(2).toString("hex")}`, price: 1800, stock: STOCK });
	startStock.set(variantId, STOCK);
	const buyers: Customer[] = [];
	for (let i = 0; i < BUYERS; i++) buyers.push(await registerCustomer(gw));
	for (const b of buyers) await addToCart(gw, b.token, variantId, 1);
	killedAt = Infinity;
	answeredAt = [];
	const kill = killAndRestart(nodeID, killAfterMs);
	const results = await Promise.all(buyers.map((b) => checkoutUntilAnswered(b, crypto.randomUUID(), 90_000)));
	await kill;
	return { buyers, variantId, results };
}

async function ordersOf(buyer: Customer): Promise<any[]> {
	return (await gw.get("/api/orders", { token: buyer.token })).body.rows;
}

beforeAll(async () => {
	await Promise.all([start("users-1", { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password }), start("products-1"), start("checkout-1"), start("consumers-1")]);
	await start("gw-1");
	gw = new HttpClient(`http://127.0.0.1:${nodes["gw-1"].port}`);
	await eventually(async () => {
		const h = await gw.get("/api/health");
		return h.status === 200 && Object.values(SERVICES).flat().filter((s) => s !== "api").every((s) => h.body.services.includes(s));
	}, 30_000);
	adminToken = await login(gw, ADMIN.email, ADMIN.password);
});

afterAll(async () => {
	await Promise.all(Object.values(nodes).map((n) => n.kill("SIGKILL")));
});

describe.each([
	["products-1", "the catalog node (stock reservations)", 40],
	["checkout-1", "the checkout node (orders, payments, carts)", 60],
	["consumers-1", "the consumers node (notifications, analytics)", 60],
])("%s killed with SIGKILL mid-checkout: %s", (nodeID, _what, killAfterMs) => {
	test("every buyer ends with one confirmed order, the stock counts every unit once, and it is all announced", async () => {
		const { buyers, variantId, results } = await checkoutsThroughAKill(nodeID, killAfterMs);
		expect(results.map((r) => r?.status).filter((s) => s !== 200 && s !== 201)).toEqual([]);
		// Checkouts were in flight when the node died (else this test shows nothing).
		expect(answeredAt.filter((t) => t > killedAt).length).toBeGreaterThan(0);
		for (const [i, b] of buyers.entries()) {
			const orders = await ordersOf(b);
			expect(orders.filter((o) => o.status === "confirmed").map((o) => o.id)).toEqual([results[i]!.body.id]);
			// An attempt the death interrupted was undone (its retry made the order above).
			expect(orders.filter((o) => o.status !== "confirmed").map((o) => o.status)).toEqual(orders.slice(1).map(() => "cancelled"));
		}
		// Reservations of undone attempts are released: the stock is the start less what was sold.
		await eventually(async () => {
			const history = await gw.get(`/api/inventory/${variantId}/history?pageSize=100`, { token: adminToken });
			return history.body.rows.reduce((sum: number, t: { delta: number }) => sum + t.delta, 0) === STOCK - BUYERS;
		}, 30_000);
		// Each buyer is told once.
		await eventually(async () => {
			for (const b of buyers) {
				const sent = await gw.get("/api/me/notifications", { token: b.token });
				if ((sent.body.rows ?? sent.body).filter((m: any) => m.template === "order-confirmed").length !== 1) return false;
			}
			return true;
		}, 30_000);
	});
});

/** The same node on its files, with the crash hook armed (SIGUSR2): it kills itself right after its k-th write from now on. */
async function armedToDie(nodeID: string, k: number) {
	const { dataDir } = nodes[nodeID];
	await nodes[nodeID].kill("SIGTERM");
	const hook = `--require ${path.join(__dirname, "../fixtures/crash-hook.js")}`;
	await start(nodeID, { DATA_DIR: dataDir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} ${hook}`, CRASH_AT: `write:${k}`, CRASH_ARM: "signal", SHOP_DIST: DIST });
	await eventually(async () => {
		const h = await gw.get("/api/health");
		return h.status === 200 && SERVICES[nodeID].every((s) => h.body.services.includes(s));
	}, 30_000);
	nodes[nodeID].proc.kill("SIGUSR2");
}

/** Once the armed node has killed itself (and stayed down `downMs`), the same node again on its files, without the hook. */
async function backAfterItsDeath(nodeID: string, downMs = 0) {
	expect(await nodes[nodeID].exited).toBeNull(); // killed by its signal
	await new Promise((r) => setTimeout(r, downMs));
	await start(nodeID, { DATA_DIR: nodes[nodeID].dataDir });
}

test("products-1 dies between taking a buyer's unit and marking the reservation reserved: back on its files, it puts the unit back at once", async () => {
	const { variantId, product } = await createProduct(gw, adminToken, { name: `Half reserved ${crypto.randomBytes(2).toString("hex")}`, price: 1800, stock: STOCK });
	startStock.set(variantId, STOCK);
	const buyer = await registerCustomer(gw);
	await addToCart(gw, buyer.token, variantId, 1);
	// Its 1st write claims the reservation, its 2nd takes the unit (stock and hold in one update): there it dies.
	await armedToDie("products-1", 2);
	answeredAt = [];
	const answered = checkoutUntilAnswered(buyer, crypto.randomUUID(), 90_000);
	await backAfterItsDeath("products-1");
	expect((await answered)?.status).toBe(201);
	// Not after the 2-minute stale window: the restarted node knows the half-made reservation was its own.
	// The stock itself, as the dead reserve wrote no audit row for its unit.
	await eventually(async () => (await gw.get(`/api/products/${product.id}`)).body.variants[0].stock === STOCK - 1, 30_000);
	const history = await gw.get(`/api/inventory/${variantId}/history?pageSize=100`, { token: adminToken });
	expect(history.body.rows.reduce((sum: number, t: { delta: number }) => sum + t.delta, 0)).toBe(STOCK - 1);
});

// A cancel's stock, refund and email are follow-ups of the order's change: a node dying among them must
// not leave the customer told "cancelled" with the money kept (they used to wait 15 minutes).
test.each([
	// Down past the request's timeout: the gateway's retry of the cancel answers while the first call still drives.
	["products-1", 1, "the catalog node, at the first write of the cancel's stock return, down 5 s", 5000],
	["checkout-1", 2, "the checkout node, right after claiming the cancel's follow-ups", 0],
])("%s dies during a customer's cancel (its write %i: %s): the stock, the refund and the email follow within seconds of its return", async (nodeID, k, _what, downMs) => {
	const { variantId, product } = await createProduct(gw, adminToken, { name: `Cancelled ${crypto.randomBytes(2).toString("hex")}`, price: 2400, stock: STOCK });
	startStock.set(variantId, STOCK);
	const buyer = await registerCustomer(gw);
	await addToCart(gw, buyer.token, variantId, 1);
	const placed = await checkoutUntilAnswered(buyer, crypto.randomUUID(), 30_000);
	expect(placed?.status).toBe(201);
	const sent = async (template: string) => ((await gw.get("/api/me/notifications", { token: buyer.token })).body.rows ?? []).filter((m: any) => m.template === template).length;
	// The confirmation first: the writes counted are the cancel's.
	await eventually(async () => (await sent("order-confirmed")) === 1, 30_000);
	await armedToDie(nodeID, k);
	const cancel = gw.post(`/api/orders/${placed!.body.id}/cancel`, {}, { token: buyer.token }).catch(() => null);
	await backAfterItsDeath(nodeID, downMs);
	// Whatever the cancel answered (200, or 503 when its own drive failed), nobody retries it.
	await cancel;
	await eventually(async () => {
		const order = (await gw.get(`/api/orders/${placed!.body.id}`, { token: buyer.token })).body;
		return order.status === "cancelled" && order.paymentStatus === "refunded" && order.refundedAmount === order.total;
	}, 30_000);
	await eventually(async () => (await gw.get(`/api/products/${product.id}`)).body.variants[0].stock === STOCK, 30_000);
	await eventually(async () => (await sent("order-cancelled")) === 1, 30_000);
});

test("the stored files of every node pass the audit", async () => {
	// SIGTERM: each node finishes what it is doing and closes its files.
	await Promise.all(Object.values(nodes).map((n) => n.kill("SIGTERM")));
	const data = await readStoredData(Object.values(nodes).map((n) => n.dataDir));
	// Every rule but "one order per key": a key freed after its interrupted order was undone makes one
	// more, which the tests above check (one confirmed order each, the others cancelled).
	expect(audit({ data, startStock, answers }).filter((v) => !/^orders: user \S+ has \d+ orders from/.test(v))).toEqual([]);
});
