/**
 * `npm run loadtest:rules`: many concurrent buyers against limited stock and limited promo uses,
 * with injected payment declines and double submits, through the HTTP API of a shop process.
 * Afterwards the shop is stopped and its stored data is audited directly (bench/lib/audit.ts):
 *   no stock below zero; units sold + units left = units at start (and the audit trail agrees);
 *   every checkout settled, one order per idempotency key; one successful payment per confirmed
 *   order and no payment without an order; no promo use beyond its limit; every confirmed order
 *   notified once. Then each rule is shown to fire on a broken copy of the same data.
 * Exits non-zero on any violation. `--short` for CI (well under a minute once dist/ is built);
 * `--no-build` uses dist/ as it is.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { audit, selfCheck, CONFIRMED_STATES, type AuditInput } from "./lib/audit";
import { readStoredData } from "./lib/stored-data";
import { ensureBuilt, startShopProcess } from "./lib/processes";

const SHORT = process.argv.includes("--short");
const BUYERS = SHORT ? 40 : 150;
const STOCK = SHORT ? 12 : 40;
const PRODUCTS = 3;
const PROMO_USES = SHORT ? 6 : 20;
const PROMO_CODE = "RULES10";
const ADMIN = { ADMIN_EMAIL: "rules-admin@example.com", ADMIN_PASSWORD: "rules admin passphrase" };
const log = (...a: unknown[]) => console.error("[rules]", ...a);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function countBy(values: string[]): Record<string, number> {
	const counts: Record<string, number> = {};
	for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
	return counts;
}

type Http = (method: string, p: string, o?: { body?: unknown; token?: string; headers?: Record<string, string> }) => Promise<{ status: number; body: any }>;

function client(base: string): Http {
	return async (method, p, o = {}) => {
		const headers: Record<string, string> = { ...(o.headers ?? {}) };
		if (o.token) headers.authorization = `Bearer ${o.token}`;
		if (o.body !== undefined) headers["content-type"] = "application/json";
		const r = await fetch(base + p, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
		const text = await r.text();
		return { status: r.status, body: text ? JSON.parse(text) : null };
	};
}

function expectStatus(what: string, res: { status: number; body: any }, status: number) {
	if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`);
	return res.body;
}

/** Runs `fn` over 0..n-1 with at most `limit` at a time. */
async function inBatches<R>(n: number, limit: number, fn: (i: number) => Promise<R>): Promise<R[]> {
	const out: R[] = new Array(n);
	let next = 0;
	await Promise.all(Array.from({ length: limit }, async () => {
		while (next < n) {
			const i = next++;
			out[i] = await fn(i);
		}
	}));
	return out;
}

async function main() {
	const started = Date.now();
	if (!process.argv.includes("--no-build")) ensureBuilt(false, (m) => log(m));
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "rules-"));
	try {
		process.exitCode = await run(dataDir);
	} finally {
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
	log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function run(dataDir: string): Promise<number> {
	const shop = await startShopProcess({ DATA_DIR: dataDir, SEED_DEMO: "false", METRICS_ENABLED: "false", ...ADMIN }, { gateway: true });
	const http = client(`http://127.0.0.1:${shop.port}`);
	const stats: Record<string, number> = {};
	const violations: string[] = [];
	const startStock = new Map<string, number>();
	const answers: AuditInput["answers"] = [];
	try {
		const admin = expectStatus("admin login", await http("POST", "/api/auth/login", { body: { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD } }), 200).accessToken;
		const variants: string[] = [];
		for (let i = 0; i < PRODUCTS; i++) {
			const body = { name: `Scarce Item ${i}`, price: 1000 + i * 250, currency: "USD", variants: [{ sku: `SCARCE-${i}`, name: "Only", stock: STOCK }] };
			const product = expectStatus("create product", await http("POST", "/api/products", { token: admin, body }), 201);
			variants.push(product.variants[0].id);
			startStock.set(product.variants[0].id, STOCK);
		}
		expectStatus("create promo", await http("POST", "/api/promotions", { token: admin, body: { code: PROMO_CODE, type: "percent", value: 10, maxUses: PROMO_USES } }), 201);

		// Registration is bcrypt-bound (cost 12): a few at a time, or the last ones would time out in the queue.
		log(`registering ${BUYERS} buyers and filling their carts`);
		const buyers = await inBatches(BUYERS, 3, async (i) => {
			const reg = expectStatus("register", await http("POST", "/api/auth/register", { body: { email: `rules-${i}-${crypto.randomBytes(4).toString("hex")}@example.com`, password: "rules buyer passphrase" } }), 201);
			const token = reg.accessToken;
			const addr = expectStatus("address", await http("POST", "/api/me/addresses", { token, body: { type: "shipping", line1: "1 Rule St", city: "Audit", postalCode: "11111", country: "US" } }), 201);
			// One or two lines of one or two units: demand is several times the stock.
			for (let k = 0; k <= i % 2; k++) expectStatus("add to cart", await http("POST", "/api/cart/items", { token, body: { variantId: variants[(i + k) % PRODUCTS], quantity: 1 + (i % 3 === 0 ? 1 : 0) } }), 201);
			if (i % 2 === 0) expectStatus("apply promo", await http("POST", "/api/cart/promo", { token, body: { code: PROMO_CODE } }), 200);
			// Every fourth buyer's card is declined (the test provider's decline token).
			return { userId: reg.user.id as string, token, addressId: addr.id as string, card: i % 4 === 1 ? "pm_card_chargeDeclined" : "pm_card_visa" };
		});

		// Everyone checks out at once; every fifth buyer double-submits with the same key. Stock held by
		// checkouts that then fail (declined, promo exhausted) comes back: those refused for stock try
		// once more with a new key, which sells the shelves (nearly) empty, and so do those whose code was
		// used up meanwhile (checkout refuses to drop it unasked), without the code.
		const checkout = (wave: typeof buyers, doubleEvery: number) =>
			Promise.all(
				wave.flatMap((b, i) => {
					const key = crypto.randomUUID();
					const body = { shippingAddressId: b.addressId, paymentMethod: { type: "card", token: b.card } };
					const send = async () => {
						const res = await http("POST", "/api/orders", { token: b.token, headers: { "Idempotency-Key": key }, body });
						answers.push({ userId: b.userId, key, status: res.status, orderId: res.body?.id, type: res.body?.type });
						return res.status;
					};
					return i % doubleEvery === 0 ? [send(), send()] : [send()];
				}),
			);
		log("checking out all at once");
		const t0 = Date.now();
		await checkout(buyers, 5);
		const refusedFor = (refused: (a: (typeof answers)[number]) => boolean) =>
			buyers.filter((b) => answers.some((a) => a.userId === b.userId && refused(a)) && !answers.some((a) => a.userId === b.userId && a.status < 300));
		// The code went before the checkout (409) or while it ran (422 on the code).
		const promoGone = refusedFor((a) => a.type === "CART_HAS_PROBLEMS" || a.status === 422);
		for (const b of promoGone) expectStatus("remove promo", await http("DELETE", "/api/cart/promo", { token: b.token }), 200);
		const refused = [...refusedFor((a) => a.type === "INSUFFICIENT_STOCK"), ...promoGone];
		log(`second wave: ${refused.length} buyers refused for stock or a used-up code try again`);
		await checkout(refused, 3);
		stats.checkoutSeconds = Math.round((Date.now() - t0) / 100) / 10;
		for (const a of answers) {
			const label = a.status < 300 ? `http_${a.status}` : `http_${a.status}_${a.type}`;
			stats[label] = (stats[label] ?? 0) + 1;
		}
		for (const a of answers) if (![200, 201, 402, 409, 422].includes(a.status)) violations.push(`http: unexpected checkout status ${a.status}`);

		// The confirmations are sent asynchronously: wait until every confirmed order has its email (or 20 s).
		const confirmedOrders = expectStatus("orders", await http("GET", "/api/orders?status=confirmed&pageSize=1", { token: admin }), 200).total;
		for (let i = 0; i < 200; i++) {
			const sent = expectStatus("notifications", await http("GET", "/api/notifications?template=order-confirmed&channel=email&pageSize=1", { token: admin }), 200).total;
			const queued = expectStatus("notifications", await http("GET", "/api/notifications?status=queued&pageSize=1", { token: admin }), 200).total;
			if (sent >= confirmedOrders && queued === 0) break;
			await sleep(100);
		}
	} finally {
		// A graceful stop: the embedded store writes its files completely before the audit reads them.
		await shop.stop();
	}

	// --- The audit, from the stored data (NeDB files, read directly: no service code involved).
	const data = await readStoredData(dataDir);
	const input: AuditInput = { data, startStock, answers };
	violations.push(...audit(input));
	const confirmed = data.orders.filter((o) => CONFIRMED_STATES.has(o.status));
	Object.assign(stats, {
		orders: data.orders.length,
		confirmed: confirmed.length,
		cancelled: data.orders.filter((o) => o.status === "cancelled").length,
		// What the cancelled orders say of their money: failed (declined) or cancelled (never charged).
		cancelledPaymentStatus: countBy(data.orders.filter((o) => o.status === "cancelled").map((o) => String(o.paymentStatus))),
		unitsSold: confirmed.flatMap((o) => o.items).reduce((a: number, l: any) => a + l.quantity, 0),
		unitsAtStart: PRODUCTS * STOCK,
		promoUses: data.promotions[0]?.usedCount ?? 0,
		payments: data.payments.length,
		confirmationEmails: data.notifications.filter((m) => m.template === "order-confirmed" && m.channel === "email").length,
	});
	console.log(JSON.stringify({ buyers: BUYERS, stockPerProduct: STOCK, products: PRODUCTS, promoMaxUses: PROMO_USES, ...stats }, null, 2));

	// A run in which nothing was sold, declined or discounted would prove little.
	if (!stats.confirmed || !stats.cancelled || !stats.promoUses || !answers.some((a) => a.status === 402)) violations.push(`load: the run did not exercise every rule (${JSON.stringify(stats)})`);
	if (violations.length) {
		console.error(`${violations.length} violation(s):\n- ${violations.join("\n- ")}`);
		return 1;
	}
	const missed = selfCheck(input);
	if (missed.length) {
		console.error(`The audit failed to notice ${missed.length} deliberate breakage(s) of the stored data:\n- ${missed.join("\n- ")}`);
		return 1;
	}
	console.log("business rules hold: no oversell, one charge per confirmed order, payment statuses agree, promo limit kept, one confirmation each (and each check fires on broken data)");
	return 0;
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
