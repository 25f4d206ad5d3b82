/**
 * `npm run loadtest:rules`: many concurrent buyers against limited stock and limited promo uses,
 * with injected payment declines and double submits, through the HTTP API of a shop process.
 * Afterwards the shop is stopped and its stored data is audited directly:
 *   no stock below zero; units sold + units left = units at start; one successful payment per
 *   confirmed order and no payment without an order; no promo use beyond its limit; every
 *   confirmed order notified once. Exits non-zero on any violation. `--short` for CI.
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Collection } from "../mixins/collection";
import { ROOT, startShopProcess } from "./lib/processes";

const SHORT = process.argv.includes("--short");
const BUYERS = SHORT ? 40 : 150;
const STOCK = SHORT ? 12 : 40;
const PRODUCTS = 3;
const PROMO_USES = SHORT ? 6 : 20;
const DECLINE_SHARE = 0.25;
const ADMIN = { ADMIN_EMAIL: "rules-admin@example.com", ADMIN_PASSWORD: "rules admin passphrase" };

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

async function main() {
	execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "rules-"));
	const shop = await startShopProcess({ DATA_DIR: dataDir, SEED_DEMO: "false", ...ADMIN, METRICS: "false" }, { gateway: true });
	const http = client(`http://127.0.0.1:${shop.port}`);
	const violations: string[] = [];
	const stats: Record<string, number> = {};
	try {
		const admin = (await http("POST", "/api/auth/login", { body: { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD } })).body.accessToken;
		const variants: string[] = [];
		for (let i = 0; i < PRODUCTS; i++) {
			const p = await http("POST", "/api/products", { token: admin, body: { name: `Scarce Item ${i}`, price: 1000 + i * 250, currency: "USD", variants: [{ sku: `SCARCE-${i}-${Date.now()}`, name: "Only", stock: STOCK }] } });
			if (p.status !== 201) throw new Error(`create product: ${p.status} ${JSON.stringify(p.body)}`);
			variants.push(p.body.variants[0].id);
		}
		const promo = await http("POST", "/api/promotions", { token: admin, body: { code: "RULES10", type: "percent", value: 10, maxUses: PROMO_USES } });
		if (promo.status !== 201) throw new Error(`create promo: ${promo.status} ${JSON.stringify(promo.body)}`);

		const buyers = await Promise.all(
			Array.from({ length: BUYERS }, async (_, i) => {
				const reg = await http("POST", "/api/auth/register", { body: { email: `rules-${i}-${crypto.randomBytes(3).toString("hex")}@example.com`, password: "rules buyer passphrase" } });
				const token = reg.body.accessToken;
				const addr = await http("POST", "/api/me/addresses", { token, body: { type: "shipping", line1: "1 Rule St", city: "Audit", postalCode: "11111", country: "US" } });
				for (let k = 0; k <= i % 2; k++) await http("POST", "/api/cart/items", { token, body: { variantId: variants[(i + k) % PRODUCTS], quantity: 1 + (i % 3 === 0 ? 1 : 0) } });
				if (i % 2 === 0) await http("POST", "/api/cart/promo", { token, body: { code: "RULES10" } });
				return { token, addressId: addr.body.id, declines: Math.random() < DECLINE_SHARE };
			}),
		);

		// Everyone checks out at once; every fifth buyer double-submits with the same key.
		const outcomes = await Promise.all(
			buyers.flatMap((b, i) => {
				const key = crypto.randomUUID();
				const body = { shippingAddressId: b.addressId, paymentMethod: { type: "card", token: b.declines ? "pm_card_chargeDeclined" : "pm_card_visa" } };
				const send = () => http("POST", "/api/orders", { token: b.token, headers: { "Idempotency-Key": key }, body });
				return i % 5 === 0 ? [send(), send()] : [send()];
			}),
		);
		for (const o of outcomes) stats[`http_${o.status}`] = (stats[`http_${o.status}`] ?? 0) + 1;
		for (const o of outcomes) if (![200, 201, 402, 409, 422].includes(o.status)) violations.push(`unexpected checkout status ${o.status}: ${JSON.stringify(o.body)}`);
		// Let the notification workers drain.
		await new Promise((r) => setTimeout(r, 3000));
	} finally {
		await shop.stop();
	}

	// --- The audit, from the stored data.
	const open = async (name: string) => {
		const c = new Collection(name, { fields: {} }, { dataDir });
		await c.connect();
		return c.find({});
	};
	const [variants, txs, orders, payments, promotions, uses, messages] = await Promise.all(
		["variants", "inventory_transactions", "orders", "payments", "promotions", "promotion_uses", "messages"].map(open),
	);
	const confirmedStates = new Set(["confirmed", "processing", "shipped", "delivered"]);
	const confirmed = orders.filter((o) => confirmedStates.has(o.status));
	stats.orders = orders.length;
	stats.confirmed = confirmed.length;

	for (const v of variants) if (v.stock < 0) violations.push(`variant ${v.id} stock ${v.stock} < 0`);
	for (const v of variants) {
		const sold = confirmed.flatMap((o) => o.items).filter((l: any) => l.variantId === v.id).reduce((a: number, l: any) => a + l.quantity, 0);
		if (sold + v.stock !== STOCK) violations.push(`variant ${v.sku}: sold ${sold} + left ${v.stock} != ${STOCK}`);
		const audit = txs.filter((t) => t.variantId === v.id).reduce((a, t) => a + t.delta, 0);
		if (STOCK + audit !== v.stock) violations.push(`variant ${v.sku}: audit trail sums to ${audit}, stock moved ${v.stock - STOCK}`);
	}
	const succeeded = payments.filter((p) => ["succeeded", "partially_refunded", "refunded"].includes(p.status));
	const orderById = new Map(orders.map((o) => [o.id, o]));
	for (const o of confirmed) {
		const n = succeeded.filter((p) => p.orderId === o.id && p.status === "succeeded").length;
		if (n !== 1) violations.push(`confirmed order ${o.number} has ${n} successful payments`);
	}
	for (const p of succeeded) {
		const o = orderById.get(p.orderId);
		if (!o) violations.push(`payment ${p.id} has no order`);
		else if (!confirmedStates.has(o.status) && p.status === "succeeded") violations.push(`payment ${p.id} succeeded for ${o.status} order ${o.number} without a refund`);
	}
	for (const promo of promotions) {
		if (promo.usedCount > promo.maxUses) violations.push(`promo ${promo.code} used ${promo.usedCount} > ${promo.maxUses}`);
		const usedByConfirmed = confirmed.filter((o) => o.promoCode === promo.code).length;
		const records = uses.filter((u) => u.promotionId === promo.id).length;
		if (usedByConfirmed !== promo.usedCount || records !== promo.usedCount) violations.push(`promo ${promo.code}: counter ${promo.usedCount}, records ${records}, confirmed orders with it ${usedByConfirmed}`);
		stats.promoUses = promo.usedCount;
	}
	for (const o of confirmed) {
		const sent = messages.filter((m) => m.userId === o.userId && /order.?confirmed/i.test(m.template) && m.channel === "email" && JSON.stringify(m).includes(o.id));
		if (sent.length !== 1) violations.push(`confirmed order ${o.number} notified ${sent.length} times`);
	}
	stats.payments = payments.length;
	console.log(JSON.stringify({ buyers: BUYERS, stockPerProduct: STOCK, products: PRODUCTS, promoMaxUses: PROMO_USES, ...stats }, null, 2));
	if (violations.length) {
		console.error(`${violations.length} violation(s):\n- ${violations.join("\n- ")}`);
		process.exit(1);
	}
	console.log("business rules hold: no oversell, one charge per confirmed order, promo limit kept, one confirmation each");
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
