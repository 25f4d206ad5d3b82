/**
 * A deploy, as Kubernetes does one: every node is replaced in turn with SIGTERM while buyers browse,
 * fill carts and check out, and the new process comes back on the old one's files (its volume).
 *
 * The embedded store keeps each node's collections in its own files, so a second node of products or
 * orders would be a second, separate shop (two stocks, two order books): each stateful group runs on
 * ONE node, as an operator must run it, and its restart leaves the group without a node for a moment.
 * What a deploy must still guarantee: no request fails with anything but a 503 (the contract's "try
 * again"), no connection is refused or reset, a checkout the buyer retries with its key after a 503
 * ends as one order, nothing sold or announced is lost or counted twice, and each node stops
 * cleanly (exit 0 within SHUTDOWN_TIMEOUT). The gateways are stateless and two, behind a stand-in
 * for the Kubernetes Service (test/helpers/cluster.ts startServiceProxy): each leaves it as its SIGTERM
 * is sent, with requests still in flight, and joins again once its /api/health answers 200.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startNode, startServiceProxy, eventually, redisUrl, type ServiceProxy, type ShopNode } from "../helpers/cluster";
import { HttpClient } from "../helpers/http";
import { registerCustomer, login, createProduct, type Customer } from "../helpers/flows";
import { audit, type AuditInput } from "../../bench/lib/audit";
import { readStoredData } from "../../bench/lib/stored-data";

jest.setTimeout(180_000);

const ns = `cluster-rolling-${Date.now()}`;
const ADMIN = { email: "rolling-ops@example.com", password: "a long admin passphrase" };
const BUYERS = 10;
const STOCK = 10_000;
const SHUTDOWN_TIMEOUT = 8000;
/** The node each of the buyers' requests is routed to by the gateway. */
const ROUTED_TO: Record<string, string> = { list: "catalog-1", product: "catalog-1", search: "catalog-1", cart: "checkout-1", checkout: "checkout-1", me: "users-1" };
/** How long after a node's /ready the gateway may take to route to it (discovery, its aliases' debounce). */
const DISCOVERY_MS = 2000;
/** How long a call waits for a restarting node: SERVICE_WAIT_TIMEOUT (5 s), at most half of REQUEST_TIMEOUT (10 s). */
const SERVICE_WAIT_MS = 5000;
const SERVICES: Record<string, string[]> = {
	"users-1": ["users"],
	"catalog-1": ["products", "search", "reviews"],
	"checkout-1": ["orders", "payments", "cart"],
	"consumers-1": ["notifications", "analytics"],
	"gw-1": ["api"],
	"gw-2": ["api"],
};
/** The order of the deploy: every node once. */
const ROLLOUT = ["catalog-1", "checkout-1", "users-1", "consumers-1", "gw-1", "gw-2"];
const GATEWAYS = ["gw-1", "gw-2"];
// REQUEST_TIMEOUT as in production: a call may wait up to half of it for a restarting node (SERVICE_WAIT_TIMEOUT).
const common = { REQUEST_TIMEOUT: "10000", REDIS_URL: redisUrl(), RATE_LIMIT: "100000", AUTH_RATE_LIMIT: "100000", SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT) };
const envOf = (nodeID: string): Record<string, string> => (nodeID === "users-1" ? { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } : {});

const nodes: Record<string, ShopNode> = {};
let gw: HttpClient;
let proxy: ServiceProxy;
let adminToken: string;

/** Every request the buyers made, as they saw it. */
interface Seen {
	what: string;
	status: number;
	type?: string;
	message?: string;
	error?: string;
	/** The node being restarted when the request was sent ("" between restarts). */
	during: string;
	at: number;
	ms: number;
}
const seen: Seen[] = [];
const answers: AuditInput["answers"] = [];
const startStock = new Map<string, number>();
const stops: Array<{ nodeID: string; code: number | null; ms: number; inflight?: number }> = [];
let restarting = "";
const readyWhileStopping: string[] = [];
const timeline: Array<{ nodeID: string; sigterm: number; exited: number; ready: number }> = [];
/** Set when the rollout ends, or the test does (a failure or timeout): the buyers' loops end, so jest can. */
let done = false;
/** How long the test waits for a SIGTERMed node to exit before it kills it (the assertion on `stops` then fails). */
const EXIT_WAIT_MS = SHUTDOWN_TIMEOUT + 5000;

async function start(nodeID: string, env: Record<string, string> = {}) {
	nodes[nodeID] = await startNode({ nodeID, services: SERVICES[nodeID], namespace: ns, env: { ...common, ...envOf(nodeID), ...env } });
	return nodes[nodeID];
}

/** One request as a buyer sends it: no retry, a dropped connection recorded as status 0. */
async function send(what: string, call: () => Promise<{ status: number; body: any }>) {
	const during = restarting;
	const at = Date.now();
	try {
		const res = await call();
		seen.push({ what, status: res.status, type: res.body?.type, message: res.status >= 409 ? res.body?.message : undefined, during, at, ms: Date.now() - at });
		return res;
	} catch (err) {
		seen.push({ what, status: 0, error: String((err as Error).cause ?? err), during, at, ms: Date.now() - at });
		return null;
	}
}

/** Checkout with one key, sent again with that key after a 503 (API.md), and while that first attempt still runs. */
async function checkout(buyer: Customer) {
	const key = crypto.randomUUID();
	const body = { shippingAddressId: buyer.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } };
	const deadline = Date.now() + 20_000;
	let after503 = false;
	for (;;) {
		const res = await send("checkout", () => gw.post("/api/orders", body, { token: buyer.token, headers: { "Idempotency-Key": key } }));
		const again = res && (res.status === 503 || (after503 && res.status === 409 && /IN_PROGRESS/.test(res.body?.type ?? "")));
		if (res?.status === 503) after503 = true;
		if (!again || Date.now() > deadline) {
			if (res) answers.push({ userId: buyer.userId, key, status: res.status, orderId: res.body?.id, type: res.body?.type });
			return res;
		}
		await new Promise((r) => setTimeout(r, 200));
	}
}

/** Browse, add to the cart, check out; again until told to stop. */
async function shop(buyer: Customer, products: Array<{ id: string; variantId: string }>, stop: () => boolean) {
	const created: string[] = [];
	for (let i = 0; !stop(); i++) {
		const p = products[i % products.length];
		await send("list", () => gw.get("/api/products?pageSize=5"));
		await send("product", () => gw.get(`/api/products/${p.id}`));
		// Signed in, so a search node answers it, not the gateway's response cache.
		await send("search", () => gw.get("/api/search?q=Rolling", { token: buyer.token }));
		await send("cart", () => gw.post("/api/cart/items", { variantId: p.variantId, quantity: 1 + (i % 2) }, { token: buyer.token }));
		await send("me", () => gw.get("/api/me", { token: buyer.token }));
		const res = await checkout(buyer);
		// 200: the order a retry with the key found already made.
		if ((res?.status === 201 || res?.status === 200) && !created.includes(res.body.id)) created.push(res.body.id);
	}
	return created;
}

/** SIGTERM, wait for the exit, the same node again on its files, ready: the next one. */
async function rollingRestart() {
	for (const nodeID of ROLLOUT) {
		// The test has ended (afterAll): start no node it would not stop.
		if (done) return;
		const node = nodes[nodeID];
		restarting = nodeID;
		// A terminating pod leaves the Service's endpoints; requests it is serving must still finish: the
		// gateway goes while it has some.
		if (node.port) {
			await eventually(() => proxy.inflight(node.port!) > 0, 5000, 5).catch(() => undefined);
			proxy.remove(node.port);
		}
		const t0 = Date.now();
		const inflight = node.port ? proxy.inflight(node.port) : undefined;
		const exit = node.kill("SIGTERM");
		// Its readiness probe fails from the signal on, so Kubernetes sends it nothing new.
		let stopped = false;
		void exit.then(() => (stopped = true));
		await new Promise((r) => setTimeout(r, 50)); // the signal's delivery
		while (!stopped && !done) {
			if (Date.now() - t0 > EXIT_WAIT_MS) {
				// Kubernetes' SIGKILL after its grace period: the exit code null fails the test, with this stop named.
				console.log(`${nodeID} still running ${EXIT_WAIT_MS} ms after SIGTERM; its output:\n${node.output().slice(-4000)}`);
				void node.kill("SIGKILL");
				break;
			}
			const ready = await fetch(`http://127.0.0.1:${node.healthPort}/ready`).then((r) => r.status, () => 0);
			if (ready === 200 && !stopped) readyWhileStopping.push(nodeID);
			await new Promise((r) => setTimeout(r, 20));
		}
		const code = await exit;
		if (done) return;
		const ms = Date.now() - t0;
		// A slow stop fails the test below; what the node said while stopping says why (its next run's output replaces it).
		if (process.env.ROLLING_DEBUG) fs.writeFileSync(path.join(os.tmpdir(), `rolling-${nodeID}-stopped.log`), node.output());
		if (ms > SHUTDOWN_TIMEOUT || code !== 0) console.log(`${nodeID} stopped with ${code} after ${ms} ms; its output:\n${node.output().slice(-6000)}`);
		stops.push({ nodeID, code, ms, inflight });
		timeline.push({ nodeID, sigterm: t0, exited: Date.now(), ready: 0 });
		const started = await start(nodeID, { DATA_DIR: node.dataDir });
		if (started.port) await gatewayReady(started);
		timeline[timeline.length - 1].ready = Date.now();
		restarting = "";
		// Traffic between two restarts, as between two pods of a deploy; longer than DISCOVERY_MS, so each 503 belongs to one restart.
		await new Promise((r) => setTimeout(r, DISCOVERY_MS + 500));
	}
}

/** A gateway's readiness probe (/api/health) passes and it sees every service: it joins the Service. */
async function gatewayReady(node: ShopNode) {
	const direct = new HttpClient(`http://127.0.0.1:${node.port}`);
	await eventually(async () => {
		const h = await direct.get("/api/health");
		return h.status === 200 && Object.values(SERVICES).flat().filter((s) => s !== "api").every((s) => h.body.services.includes(s));
	}, 30_000);
	proxy.add(node.port!);
}

beforeAll(async () => {
	proxy = await startServiceProxy();
	await Promise.all(Object.keys(SERVICES).filter((id) => !GATEWAYS.includes(id)).map((id) => start(id)));
	await Promise.all(GATEWAYS.map((id) => start(id)));
	await Promise.all(GATEWAYS.map((id) => gatewayReady(nodes[id])));
	gw = new HttpClient(proxy.url);
	adminToken = await login(gw, ADMIN.email, ADMIN.password);
});

afterAll(async () => {
	done = true;
	await Promise.all(Object.values(nodes).map((n) => n.kill("SIGKILL")));
	await proxy?.close();
});

test("a rolling restart of every node while buyers shop: no failed request, nothing lost", async () => {
	const products: Array<{ id: string; variantId: string }> = [];
	for (let i = 0; i < 3; i++) {
		const { product, variantId } = await createProduct(gw, adminToken, { name: `Rolling Lamp ${i} ${crypto.randomBytes(2).toString("hex")}`, price: 1200 + i * 100, stock: STOCK });
		products.push({ id: product.id, variantId });
		startStock.set(variantId, STOCK);
	}
	const buyers: Customer[] = [];
	for (let i = 0; i < BUYERS; i++) buyers.push(await registerCustomer(gw));

	const shopping = buyers.map((b) => shop(b, products, () => done));
	await new Promise((r) => setTimeout(r, 1000));
	await rollingRestart();
	done = true;
	const created = await Promise.all(shopping);

	// The proxy's 502 says which gateway and which socket error (its message); the time places it among the restarts (timeline).
	const summary = (rows: Seen[]) =>
		rows.map((s) => `${s.what} ${s.status}${s.type ? ` ${s.type}` : ""}${s.status === 502 && s.message ? ` (${s.message})` : ""}${s.error ? ` ${s.error}` : ""} during ${s.during || "-"} at +${s.at - (timeline[0]?.sigterm ?? s.at)} ms`);
	const count503 = seen.filter((s) => s.status === 503).length;
	console.log(`rolling restart: ${seen.length} requests, ${count503} answered 503 (${[...new Set(seen.filter((s) => s.status === 503).map((s) => `${s.what}@${s.during || "-"}`))].join(", ")}); stops ${JSON.stringify(stops)}`);

	// Requests that took longer than a restart should cost: with a slow stop, the ones it waited for.
	const slow = seen.filter((s) => s.ms > SERVICE_WAIT_MS + 1000);
	if (slow.length) console.log(`slow requests:\n${slow.map((s) => `${s.what} ${s.status} ${s.ms} ms`).join("\n")}\n${summary(slow).join("\n")}`);
	if (process.env.ROLLING_DEBUG) {
		const t0 = Math.min(...seen.map((s) => s.at));
		console.log(timeline.map((t) => `${t.nodeID}: sigterm ${t.sigterm - t0} exited ${t.exited - t0} ready ${t.ready - t0}`).join("\n"));
		const buckets = new Map<number, Map<string, number>>();
		for (const s of seen) {
			const b = Math.floor((s.at - t0) / 500) * 500;
			const m = buckets.get(b) ?? new Map<string, number>();
			const k = `${s.what}:${s.status}${s.type && s.status >= 500 ? `/${s.type}` : ""}`;
			m.set(k, (m.get(k) ?? 0) + 1);
			buckets.set(b, m);
		}
		const msgs = new Map<string, number>();
		for (const s of seen) if (s.status >= 409) msgs.set(`${s.what} ${s.status} ${s.type} ${s.message}`, (msgs.get(`${s.what} ${s.status} ${s.type} ${s.message}`) ?? 0) + 1);
		for (const id of Object.keys(nodes)) fs.writeFileSync(path.join(os.tmpdir(), `rolling-${id}.log`), nodes[id].output());
		console.log([...msgs].map(([k, n]) => `${n} × ${k}`).join("\n"));
		console.log([...buckets].sort((a, b) => a[0] - b[0]).map(([b, m]) => `${b}: ${[...m].map(([k, n]) => `${k}=${n}`).join(" ")}`).join("\n"));
	}
	// No connection refused or reset, and no failure but the retryable 503.
	expect(summary(seen.filter((s) => s.status === 0 || (s.status >= 500 && s.status !== 503)))).toEqual([]);
	// A node being away costs a wait, not a 503: calls between services wait for it (SERVICE_WAIT_TIMEOUT),
	// and so does the gateway's own route to it. A 503 only when that node was away (until the gateway saw
	// it back) longer than the wait, for a request in flight then.
	const awayTooLong = (s: Seen) =>
		timeline.some((t) => t.nodeID === ROUTED_TO[s.what] && t.ready + DISCOVERY_MS - t.sigterm > SERVICE_WAIT_MS && s.at + s.ms >= t.sigterm && s.at <= t.ready + DISCOVERY_MS);
	expect(summary(seen.filter((s) => s.status === 503 && !awayTooLong(s)))).toEqual([]);
	// A checkout sent again with its key after a 503 gets its answer once the node is back; every checkout
	// buys the cart (or finds it empty: the buyer's add-to-cart before it was a 503).
	expect(answers.filter((a) => a.status === 503)).toEqual([]);
	expect(answers.filter((a) => a.status !== 201 && a.status !== 200 && a.type !== "CART_EMPTY").map((a) => `${a.status} ${a.type}`)).toEqual([]);
	// Every node stopped on SIGTERM by itself, cleanly, before Kubernetes would have killed it; the
	// gateways with requests in flight (else their restart shows nothing).
	expect(stops.filter((s) => s.code !== 0 || s.ms > SHUTDOWN_TIMEOUT)).toEqual([]);
	expect(readyWhileStopping).toEqual([]);
	expect(stops.filter((s) => GATEWAYS.includes(s.nodeID) && !s.inflight)).toEqual([]);
	// Orders were confirmed while the consumers node was away: their emails come from the outbox catch-up.
	const consumersAway = timeline.find((t) => t.nodeID === "consumers-1")!;
	expect(seen.filter((s) => s.what === "checkout" && s.status === 201 && s.at + s.ms > consumersAway.sigterm && s.at + s.ms < consumersAway.ready).length).toBeGreaterThan(0);
	// The buyers did check out, during the restarts too.
	expect(created.flat().length).toBeGreaterThan(BUYERS);
	// Each checkout answered 201 (or 200) is a paid, confirmed order.
	for (const [i, b] of buyers.entries()) {
		for (const id of created[i]) {
			const o = await gw.get(`/api/orders/${id}`, { token: b.token });
			expect({ id, status: o.status, order: o.body?.status, payment: o.body?.paymentStatus }).toEqual({ id, status: 200, order: "confirmed", payment: "succeeded" });
		}
	}
	// Each confirmed order is announced to its buyer once (the consumers node restarted meanwhile).
	const confirmations = async (b: Customer) => {
		let n = 0;
		for (let page = 1; ; page++) {
			const sent = await gw.get(`/api/me/notifications?pageSize=100&page=${page}`, { token: b.token });
			n += sent.body.rows.filter((m: any) => m.template === "order-confirmed").length;
			if (page * 100 >= sent.body.total) return n;
		}
	};
	await eventually(async () => {
		for (const [i, b] of buyers.entries()) if ((await confirmations(b)) !== created[i].length) return false;
		return true;
	}, 20_000, 500);

	// SIGTERM: each node finishes and closes its files; then the stored data of the whole cluster.
	await Promise.all(Object.values(nodes).map((n) => n.kill("SIGTERM")));
	const data = await readStoredData(Object.values(nodes).map((n) => n.dataDir));
	// Every rule but "one order per key": a checkout cut by a node leaving is undone and frees its key, and
	// the retry with it makes the order (the other one is cancelled: the audit checks it kept no money).
	expect(audit({ data, startStock, answers }).filter((v) => !/^orders: user \S+ has \d+ orders from/.test(v))).toEqual([]);
});
