/**
 * The business rules of the load test, checked against what the services stored (no service code
 * involved): pure functions over the collections' documents, so each rule can also be shown to fire
 * on deliberately broken copies of the same data (see `selfCheck`).
 */

type Doc = Record<string, any>;

/** The stored documents the audit reads, by owning service. */
export interface StoredData {
	/** products: `variants` and `inventory_transactions` */
	variants: Doc[];
	inventoryTransactions: Doc[];
	/** orders: `orders` and the durable events in `orders_outbox` */
	orders: Doc[];
	ordersOutbox: Doc[];
	/** payments: `payments` */
	payments: Doc[];
	/** cart: `promotions` and `promotion_slots` */
	promotions: Doc[];
	promotionUses: Doc[];
	/** notifications: `notifications` (one document per message) */
	notifications: Doc[];
}

export interface AuditInput {
	data: StoredData;
	/** Units each audited variant had before the buyers came. */
	startStock: Map<string, number>;
	/** Checkout answers as the buyers saw them: the key each used, and the status/order of each request. */
	answers: Array<{ userId: string; key: string; status: number; orderId?: string; type?: string }>;
}

/** Orders past payment: they hold sold units and a successful payment. */
export const CONFIRMED_STATES = new Set(["confirmed", "processing", "shipped", "delivered"]);
const SETTLED_STATES = new Set([...CONFIRMED_STATES, "cancelled"]);
/** Checkout refusals that come before the order is created. */
const REFUSED_BEFORE_ORDER = new Set(["CART_HAS_PROBLEMS", "CART_EMPTY", "TOO_MANY_UNPAID_ORDERS"]);
/** Payments that took the money (and still keep some of it). */
const PAID = new Set(["succeeded", "partially_refunded"]);
const CHARGED = new Set([...PAID, "refunded"]);

/** Every rule that does not hold, as a sentence; empty when all hold. */
export function audit({ data, startStock, answers }: AuditInput): string[] {
	const v: string[] = [];
	const orderById = new Map(data.orders.map((o) => [o.id, o]));
	const confirmed = data.orders.filter((o) => CONFIRMED_STATES.has(o.status));

	// Stock: never below zero; sold + left = start; the audit trail sums to the stock.
	for (const variant of data.variants) {
		const start = startStock.get(variant.id);
		if (start === undefined) continue;
		if (variant.stock < 0) v.push(`stock: variant ${variant.sku} has stock ${variant.stock} < 0`);
		const sold = confirmed.flatMap((o) => o.items ?? []).filter((l: Doc) => l.variantId === variant.id).reduce((a: number, l: Doc) => a + l.quantity, 0);
		if (sold + variant.stock !== start) v.push(`stock: variant ${variant.sku} sold ${sold} + left ${variant.stock} != ${start} at start`);
		const trail = data.inventoryTransactions.filter((t) => t.variantId === variant.id).reduce((a, t) => a + t.delta, 0);
		if (trail !== variant.stock) v.push(`stock: variant ${variant.sku} audit trail sums to ${trail}, stock is ${variant.stock}`);
	}

	// Orders: every checkout finished (confirmed or cancelled, saga not left running); one order per key.
	for (const o of data.orders) {
		if (!SETTLED_STATES.has(o.status)) v.push(`orders: order ${o.number} left ${o.status}`);
		if (o.saga && o.saga.state !== "completed" && o.saga.state !== "compensated") v.push(`orders: order ${o.number} saga ${o.saga.state}`);
	}
	// Keys that may have made an order: a refusal before the order exists (a cart the checkout will not
	// take as it is) made none, so it does not excuse an order.
	const keysByUser = new Map<string, Set<string>>();
	for (const a of answers) if (!REFUSED_BEFORE_ORDER.has(a.type ?? "")) keysByUser.set(a.userId, (keysByUser.get(a.userId) ?? new Set()).add(a.key));
	const ordersByUser = new Map<string, number>();
	for (const o of data.orders) ordersByUser.set(o.userId, (ordersByUser.get(o.userId) ?? 0) + 1);
	for (const [userId, n] of ordersByUser) {
		const keys = keysByUser.get(userId)?.size ?? 0;
		if (n > keys) v.push(`orders: user ${userId} has ${n} orders from ${keys} idempotency key(s)`);
	}
	const byKey = new Map<string, Set<string>>();
	for (const a of answers) if (a.orderId && a.status < 300) byKey.set(a.key, (byKey.get(a.key) ?? new Set()).add(a.orderId));
	for (const [key, ids] of byKey) if (ids.size > 1) v.push(`orders: idempotency key ${key} answered with ${ids.size} different orders`);

	// Payments: one successful payment per confirmed order, of its total (refunded since, maybe: an
	// admin's refund); none without an order; money kept only for confirmed orders (a cancelled order's
	// payment is refunded in full); every refund recorded on its order.
	for (const o of confirmed) {
		const paid = data.payments.filter((p) => p.orderId === o.id && CHARGED.has(p.status));
		if (paid.length !== 1) v.push(`payments: confirmed order ${o.number} has ${paid.length} successful payments`);
		else if (paid[0].amount !== o.total) v.push(`payments: confirmed order ${o.number} total ${o.total} but paid ${paid[0].amount}`);
	}
	for (const p of data.payments) {
		const o = orderById.get(p.orderId);
		if (o && (p.refundedAmount ?? 0) !== (o.refundedAmount ?? 0)) v.push(`payments: payment ${p.id} refunded ${p.refundedAmount ?? 0}, its order ${o.number} records ${o.refundedAmount ?? 0}`);
	}
	for (const p of data.payments) {
		const o = orderById.get(p.orderId);
		if (!o) v.push(`payments: payment ${p.id} (${p.status}) has no order`);
		else if (PAID.has(p.status) && !CONFIRMED_STATES.has(o.status)) v.push(`payments: payment ${p.id} kept ${p.amount} for ${o.status} order ${o.number}`);
	}

	// Each order's paymentStatus says what its payment did, once its follow-ups are done: the payment's own
	// status, `cancelled` for one stopped or never made (voided), and `cancelled` with no payment at all (a
	// checkout refused before its charge). An order that cost nothing has no payment to agree with.
	const paymentOf = new Map(data.payments.map((p) => [p.orderId, p]));
	for (const o of data.orders) {
		if (o.pendingActions?.length || !SETTLED_STATES.has(o.status)) continue;
		const p = paymentOf.get(o.id);
		if (!p && o.total === 0) continue;
		const says = !p ? "cancelled" : p.voided ? "cancelled" : p.status;
		if (o.paymentStatus !== says) v.push(`payments: ${o.status} order ${o.number} shows paymentStatus ${o.paymentStatus}, its payment says ${says}`);
	}

	// Promotions: never used beyond the limit; the counter, the use records and the orders agree.
	for (const promo of data.promotions) {
		if (promo.maxUses != null && promo.usedCount > promo.maxUses) v.push(`promo: ${promo.code} used ${promo.usedCount} > ${promo.maxUses}`);
		const onOrders = confirmed.filter((o) => String(o.promoCode ?? "").toUpperCase() === String(promo.code).toUpperCase()).length;
		const uses = data.promotionUses.filter((u) => u.promotionId === promo.id && !u.released);
		const records = uses.length;
		if (promo.maxUses != null && onOrders > promo.maxUses) v.push(`promo: ${promo.code} on ${onOrders} confirmed orders > ${promo.maxUses}`);
		// Each use holds its own slot, below the limit (an unlimited code's slots are named after orders).
		const slots = uses.map((u) => u.slot);
		if (new Set(slots).size !== slots.length) v.push(`promo: ${promo.code} has two uses in one slot`);
		if (promo.maxUses != null && slots.some((s) => typeof s !== "number" || s < 0 || s >= promo.maxUses)) v.push(`promo: ${promo.code} has a use outside its ${promo.maxUses} slots`);
		if (records !== onOrders) v.push(`promo: ${promo.code} has ${records} use records, ${onOrders} confirmed orders with it`);
		// The counter beside the slots is a guide (mixins/promotion-uses.mixin.ts): without a crash it agrees.
		if (records !== promo.usedCount) v.push(`promo counter: ${promo.code} counter ${promo.usedCount}, use records ${records}`);
	}

	// Notifications: every confirmed order announced once (one order.confirmed in the outbox) and its
	// customer emailed once for it; no confirmation for an order that is not confirmed.
	const confirmedEvents = data.ordersOutbox.filter((e) => e.event === "order.confirmed");
	const eventOrder = new Map(confirmedEvents.map((e) => [e.payload?.eventId, e.payload?.orderId]));
	const emails = data.notifications.filter((m) => m.template === "order-confirmed" && m.channel === "email");
	for (const o of confirmed) {
		const events = confirmedEvents.filter((e) => e.payload?.orderId === o.id).length;
		if (events !== 1) v.push(`notify: confirmed order ${o.number} published order.confirmed ${events} times`);
		const sent = emails.filter((m) => eventOrder.get(m.eventId) === o.id);
		if (sent.length !== 1) v.push(`notify: confirmed order ${o.number} emailed ${sent.length} times`);
		for (const m of sent) {
			if (m.status === "failed") v.push(`notify: confirmation of order ${o.number} failed: ${m.error}`);
			if (m.userId !== o.userId) v.push(`notify: confirmation of order ${o.number} went to user ${m.userId}, not ${o.userId}`);
		}
	}
	for (const m of emails) {
		const o = orderById.get(eventOrder.get(m.eventId));
		// An order confirmed and cancelled later was confirmed when its email went.
		if (!o || (!CONFIRMED_STATES.has(o.status) && !o.confirmedAt)) v.push(`notify: confirmation ${m.id} for ${o ? `${o.status} order ${o.number}` : "no known order"}`);
	}
	return v;
}

/**
 * Breaks a copy of the real data in one way per rule and checks that the audit notices: a rule
 * that cannot fail proves nothing. Returns the rules the audit did not catch (empty is good).
 */
export function selfCheck(input: AuditInput): string[] {
	const clone = (): AuditInput => ({ ...input, data: JSON.parse(JSON.stringify(input.data)), answers: [...input.answers] });
	const firstConfirmed = (d: StoredData) => d.orders.find((o) => CONFIRMED_STATES.has(o.status));
	const audited = (d: StoredData) => d.variants.find((x) => input.startStock.has(x.id))!;
	const breakages: Array<[string, (i: AuditInput) => boolean]> = [
		["stock below zero", (i) => ((audited(i.data).stock = -1), true)],
		["a unit vanished (sold + left != start)", (i) => {
			const line = firstConfirmed(i.data)?.items?.[0];
			if (!line) return false;
			line.quantity += 1;
			return true;
		}],
		["stock moved without an audit row", (i) => {
			const row = [...i.data.inventoryTransactions].reverse().find((t) => t.delta !== 0 && input.startStock.has(t.variantId));
			i.data.inventoryTransactions = i.data.inventoryTransactions.filter((t) => t !== row);
			return !!row;
		}],
		["an order left pending", (i) => ((i.data.orders[0].status = "pending"), true)],
		["two orders for one idempotency key", (i) => {
			const o = firstConfirmed(i.data);
			if (!o) return false;
			i.data.orders.push({ ...o, id: `${o.id}-dup`, number: `${o.number}-dup`, status: "cancelled" });
			return true;
		}],
		["a confirmed order without its payment", (i) => {
			const o = firstConfirmed(i.data);
			i.data.payments = i.data.payments.filter((p) => p.orderId !== o?.id);
			return !!o;
		}],
		["a payment without an order", (i) => (i.data.payments.push({ id: "ghost", orderId: "no-such-order", status: "succeeded", amount: 100 }), true)],
		["a refund its order does not know of", (i) => {
			const o = firstConfirmed(i.data);
			const p = i.data.payments.find((x) => x.orderId === o?.id);
			if (!p) return false;
			Object.assign(p, { status: "refunded", refundedAmount: p.amount });
			return true;
		}],
		["a cancelled order's payment left pending", (i) => {
			const o = i.data.orders.find((x) => x.status === "cancelled" && !x.pendingActions?.length && x.total > 0);
			if (!o) return false;
			o.paymentStatus = "pending";
			return true;
		}],
		["money kept for a cancelled order", (i) => {
			const o = i.data.orders.find((x) => x.status === "cancelled");
			if (!o) return false;
			i.data.payments.push({ id: "kept", orderId: o.id, status: "succeeded", amount: o.total });
			return true;
		}],
		["promo used beyond its limit", (i) => {
			const p = i.data.promotions[0];
			if (!p) return false;
			p.usedCount = (p.maxUses ?? 0) + 1;
			return true;
		}],
		["a promo use recorded twice", (i) => {
			const u = i.data.promotionUses.find((x) => !x.released);
			if (!u) return false;
			i.data.promotionUses.push({ ...u, id: `${u.id}-dup`, orderId: "other" });
			return true;
		}],
		["a confirmed order emailed twice", (i) => {
			const m = i.data.notifications.find((x) => x.template === "order-confirmed" && x.channel === "email");
			if (!m) return false;
			i.data.notifications.push({ ...m, id: `${m.id}-dup` });
			return true;
		}],
		["a confirmed order never emailed", (i) => {
			const before = i.data.notifications.length;
			const m = i.data.notifications.find((x) => x.template === "order-confirmed");
			i.data.notifications = i.data.notifications.filter((x) => x !== m);
			return i.data.notifications.length < before;
		}],
	];
	const missed: string[] = [];
	for (const [name, breakIt] of breakages) {
		const copy = clone();
		if (!breakIt(copy)) {
			missed.push(`${name} (the run produced no data to break this way)`);
			continue;
		}
		if (audit(copy).length === 0) missed.push(name);
	}
	return missed;
}
