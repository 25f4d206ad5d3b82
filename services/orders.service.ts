/**
 * Orders: the checkout saga, the order state machine and each order's event log.
 *
 * Checkout (POST /api/orders) reads as its story in `checkoutSteps()`: snapshot the cart → load the
 * address → create the order pending → reserve stock → consume the promo → charge → confirm →
 * commit stock → clear the cart → publish. A failure undoes the earlier steps in reverse (release
 * stock, give the promo back, refund, cancel the order with the reason). The saga's journal lives
 * on the order, so compensating again never refunds or releases twice.
 *
 * Every change of an order is one conditional update (a status compare-and-set) that also appends
 * its entries to the order's event log, kept on the order (orders stored before that keep the start
 * of their log in `order_events`, read with it).
 *
 * What a change owes afterwards (commit or release stock, return the promo use, refund, announce it)
 * is recorded on the order in that same update (`pendingActions`) and driven to completion by
 * whoever finds it: the caller, a replayed payment event, a retried cancel, the recovery timer. The
 * invariant is spelled out next to FOLLOW_UPS_AFTER in lib/order-state.ts.
 *
 * Payment news (a 3-D Secure payment settled by the webhook, a refund made at Stripe) also comes
 * from the payments outbox, so what arrived while this service was down is applied when it starts;
 * each handler is a conditional update, so an event applied twice changes nothing, and a replay
 * finishes the follow-ups an interrupted first delivery left pending.
 */
import crypto from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type Collections } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { OutboxConsumerMixin } from "../mixins/outbox-consumer.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import { newId, type Collection, type CollectionSpec, type Query } from "../mixins/collection";
import type { ShopMeta } from "../mixins/types";
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, invalidField } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { CarriedSagaLog, Saga, type SagaStep } from "../lib/saga";
import {
	announcementEvent,
	announcementOf,
	cancelReasonOf,
	checkoutDurationMs,
	createdEvent,
	logIsEmbedded,
	orderEventLog,
	type OrderEvent,
	eventPayload,
	followUpsClaimable,
	FOLLOW_UPS_AFTER,
	orderLinesOf,
	orderUpdate,
	orderView,
	OrderStateMachine,
	ORDER_STATUSES,
	paymentStatusAfterRefund,
	refundOwed,
	type Announcement,
	type FollowUp,
	type Order,
	type OrderChange,
	type OrderEventEntry,
	type OrderStatus,
} from "../lib/order-state";
import { readConfig } from "../lib/config";
import { computeCheckoutTotals, type ShippingRates } from "../lib/checkout-totals";
import { formatOrderNumber, orderNumberDay } from "../lib/order-number";
import {
	awaitIdempotentOutcome,
	claimIdempotencyKey,
	isValidIdempotencyKey,
	replayError,
	requestFingerprint,
	serializeError,
	type IdempotencyRecord,
	type IdempotencyStore,
} from "../lib/idempotency";

const IDEMPOTENCY_TTL_SECONDS = 48 * 3600;
/** Cart problems (cart.snapshot) that stop a checkout; a changed price is simply the price now. */
const BLOCKING_CART_PROBLEMS = new Set(["archived", "currency_mismatch"]);
/** Payment statuses (payments service) of a payment that went through. */
const PAID_STATUSES = new Set(["succeeded", "partially_refunded", "refunded"]);
/** A refund follow-up that finds nothing left to refund at payments is done, not failed. */
const NOTHING_TO_REFUND = new Set(["ALREADY_REFUNDED", "NOT_REFUNDABLE"]);
/** Rounds of one drive: follow-ups recorded while it held the lease are taken in the next round. */
const FOLLOW_UP_ROUNDS = 5;

interface CheckoutParams {
	shippingAddressId: string;
	paymentMethod: { type: "card"; token: string };
}

/** What the checkout steps share. `ctx` is null when compensating outside a request (recovery). */
interface Checkout {
	ctx: Context<any, ShopMeta> | null;
	orderId: string;
	userId: string;
	params?: CheckoutParams;
	cart?: { version?: unknown; items: any[]; discount?: number; currency: string; promoCode?: string | null; problems?: any[] };
	address?: Record<string, unknown>;
	order?: Order;
	/** The provider has not settled the payment yet: the webhook (payment.succeeded) confirms later. */
	awaitingPayment?: boolean;
	/** Run again by recovery: a step may have taken effect before the node died. */
	recovering?: boolean;
	/** The saga's journal: each step's mark rides on that step's write to the order. */
	log?: CarriedSagaLog;
}

/** A checkout step's write, which records the step in the saga's journal too. */
interface SagaJournalRef {
	log?: CarriedSagaLog;
	step: string;
}

interface OrdersSettings {
	rest: string;
	/** How long a repeated checkout waits for the first one with its key to finish. */
	idempotencyWaitMs: number;
	/** Test-only (NODE_ENV=test): the checkout step that throws; see injectCheckoutFailure. */
	checkoutFailAt: string | null;
	/** Overrides SHIPPING_FLAT_CENTS / FREE_SHIPPING_THRESHOLD_CENTS (tests). */
	shippingRates: ShippingRates | null;
	/** A checkout "running" (or follow-ups pending) for longer than this was interrupted and gets recovered. */
	staleCheckoutMs: number;
	/** How long one caller may drive an order's follow-ups before another takes over (it died). */
	followUpLeaseMs: number;
}

interface OrdersThis extends Service<OrdersSettings> {
	db: Collections;
	/** This service's outbox (OutboxMixin): where an announcement that may have been made is looked up. */
	outbox: Collection;
	publish(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string>;
	shippingRates: ShippingRates;
	checkoutSaga: Saga<Checkout>;
	failAt: string | null;
	recoveryTimer: NodeJS.Timeout;
	[method: string]: any;
}

const ORDER_SPECS: Record<string, CollectionSpec> = {
	orders: {
		fields: { number: String, userId: String, status: String, paymentStatus: String, items: Array, total: Number, createdAt: Date },
		indexes: [{ fields: { number: 1 }, unique: true }, { fields: { userId: 1, createdAt: -1 } }, { fields: { status: 1 } }],
	},
	// Only read: the start of the log of orders stored before the log moved onto the order.
	order_events: {
		fields: { orderId: String, seq: Number, type: String, data: Object, createdAt: Date },
		indexes: [{ fields: { orderId: 1, seq: 1 }, unique: true }],
		loadInBackground: true,
	},
	idempotency_keys: {
		fields: { userId: String, key: String, fingerprint: String, orderId: String, status: String, response: Object, error: Object, createdAt: Date },
		indexes: [{ fields: { userId: 1, key: 1 }, unique: true }, { fields: { createdAt: 1 }, expireAfterSeconds: IDEMPOTENCY_TTL_SECONDS }],
	},
	counters: { fields: { value: Number } },
};

const OrdersService: ServiceSchema<OrdersSettings, Record<string, any>, Record<string, any>, OrdersThis> = {
	name: "orders",
	mixins: [
		// Before DbMixin: the catch-up stops before the collections close.
		OutboxConsumerMixin({ cursors: "orders_cursors", sources: { payments: ["payment.succeeded", "payment.failed", "payment.refunded"] }, handler: "onPaymentEvent" }),
		DbMixin("orders", ORDER_SPECS),
		OutboxMixin("orders"),
		HealthMixin,
	] as any,
	settings: { rest: "/", idempotencyWaitMs: 8000, checkoutFailAt: null, shippingRates: null, staleCheckoutMs: 15 * 60_000, followUpLeaseMs: 2 * 60_000 },


	actions: {
		checkout: {
			rest: "POST /orders",
			auth: "required",
			params: {
				$$strict: "remove",
				shippingAddressId: { type: "string", min: 1, max: 100 },
				paymentMethod: {
					type: "object",
					strict: "remove",
					props: { type: { type: "enum", values: ["card"] }, token: { type: "string", min: 1, max: 255 } },
				},
			},
			async handler(this: OrdersThis, ctx: Context<CheckoutParams, ShopMeta>) {
				const userId = ctx.meta.user!.id;
				const key = ctx.meta.idempotencyKey;
				if (!key) throw new BadRequestError("The Idempotency-Key header is required for checkout", "IDEMPOTENCY_KEY_REQUIRED");
				if (!isValidIdempotencyKey(key)) throw new BadRequestError("Idempotency-Key must be 1 to 255 visible ASCII characters", "IDEMPOTENCY_KEY_INVALID");
				const fingerprint = requestFingerprint(ctx.params);

				const claim = await claimIdempotencyKey(this.db.idempotency_keys as unknown as IdempotencyStore, { userId, key, fingerprint, orderId: newId });
				if (!claim) throw new ConflictError("Could not claim the Idempotency-Key, retry", "IDEMPOTENCY_KEY_BUSY");
				if (!claim.claimed) return this.replayCheckout(ctx, claim.record, fingerprint);

				try {
					const order = await this.runCheckout(ctx, claim.record.orderId);
					const view = orderView(order);
					await this.db.idempotency_keys.updateOne({ id: claim.record.id }, { $set: { status: "completed", response: view } });
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/orders/${view.id}`;
					return view;
				} catch (err: any) {
					// A business refusal (402, 409, 422) is the answer to this request: replay it. A server error
					// leaves nothing behind (the saga compensated), so the key is freed for a retry.
					if (err?.code >= 400 && err?.code < 500) {
						await this.db.idempotency_keys.updateOne({ id: claim.record.id }, { $set: { status: "failed", error: serializeError(err) } });
					} else {
						await this.db.idempotency_keys.removeOne({ id: claim.record.id });
					}
					throw err;
				}
			},
		},

		list: {
			rest: "GET /orders",
			auth: "required",
			params: { ...pageParams, userId: { type: "string", optional: true }, status: { type: "enum", values: [...ORDER_STATUSES], optional: true } },
			async handler(this: OrdersThis, ctx: Context<{ page?: number; pageSize?: number; userId?: string; status?: OrderStatus }, ShopMeta>) {
				const user = ctx.meta.user!;
				// A customer only ever sees their own orders, whatever userId they send.
				const query: Query = user.role === "admin" ? (ctx.params.userId ? { userId: ctx.params.userId } : {}) : { userId: user.id };
				if (ctx.params.status) query.status = ctx.params.status;
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const [rows, total] = await this.db.orders.findWithCount(query, { sort: { createdAt: -1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map((o) => orderView(o as unknown as Order)), total, w.page, w.pageSize);
			},
		},

		get: {
			rest: "GET /orders/:id",
			auth: "required",
			params: { id: "string" },
			async handler(this: OrdersThis, ctx: Context<{ id: string }, ShopMeta>) {
				return orderView(await this.visibleOrder(ctx, ctx.params.id));
			},
		},

		eventLog: {
			rest: "GET /orders/:id/events",
			auth: "required",
			params: { id: "string" },
			async handler(this: OrdersThis, ctx: Context<{ id: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				const legacy = logIsEmbedded(order) ? [] : await this.db.order_events.find({ orderId: order.id }, { sort: { seq: 1 } });
				return orderEventLog(order, legacy as unknown as OrderEvent[]);
			},
		},

		cancel: {
			rest: "POST /orders/:id/cancel",
			auth: "required",
			params: { $$strict: "remove", id: "string", reason: { type: "string", max: 500, optional: true } },
			async handler(this: OrdersThis, ctx: Context<{ id: string; reason?: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				// An interrupted cancel (a stock, promo or refund call failed, or the node died) resumes instead of answering 409.
				if (order.status === "cancelled" && order.pendingActions?.length) return orderView((await this.driveFollowUps(ctx, order.id))!);
				if (order.saga?.state === "running") throw new ConflictError("The order's checkout is still in progress", "CHECKOUT_IN_PROGRESS");
				OrderStateMachine.assert(order.status, "cancelled");
				const reason = ctx.meta.user!.role === "admin" ? "cancelled_by_shop" : "customer_request";
				const cancelled = await this.changeOrder(order.id, {
					when: { status: { $in: OrderStateMachine.sourcesOf("cancelled") }, "saga.state": { $ne: "running" } },
					set: { status: "cancelled", cancelReason: reason, cancelledAt: new Date() },
					event: { type: "cancelled", data: { reason, note: ctx.params.reason ?? null, by: ctx.meta.user!.role } },
					followUps: FOLLOW_UPS_AFTER.cancelled,
				});
				// Lost the race against another transition (e.g. shipped meanwhile): the machine decides.
				if (!cancelled) {
					const now = await this.db.orders.findById(order.id);
					OrderStateMachine.assert(now!.status as OrderStatus, "cancelled");
					throw new ConflictError("The order changed meanwhile, try again", "CONCURRENT_UPDATE");
				}
				// A failed refund answers with its error (503): the customer's retry, or the recovery timer, finishes it.
				return orderView((await this.driveFollowUps(ctx, cancelled.id))!);
			},
		},

		updateStatus: {
			rest: "PATCH /orders/:id/status",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				status: { type: "enum", values: ["processing", "shipped", "delivered"] },
				trackingNumber: { type: "string", min: 1, max: 100, trim: true, optional: true },
			},
			async handler(this: OrdersThis, ctx: Context<{ id: string; status: OrderStatus; trackingNumber?: string }, ShopMeta>) {
				const { id, status: to, trackingNumber } = ctx.params;
				const order = await this.db.orders.findById(id);
				if (!order) throw new NotFoundError("Order");
				const from = order.status as OrderStatus;
				OrderStateMachine.assert(from, to, { trackingNumber });
				const changed = await this.changeOrder(id, {
					when: { status: from },
					set: { status: to, [`${to}At`]: new Date(), ...(to === "shipped" ? { trackingNumber } : {}) },
					event: { type: to, data: to === "shipped" ? { trackingNumber } : {} },
					followUps: FOLLOW_UPS_AFTER[to as "processing" | "shipped" | "delivered"],
				});
				if (!changed) throw new ConflictError("The order changed meanwhile, try again", "CONCURRENT_UPDATE", { from, to });
				// The status did change: an announcement that fails now is made by the recovery timer, not by a retry (409).
				await this.tryFollowUps(ctx, id);
				return orderView(changed);
			},
		},

		refund: {
			rest: "POST /orders/:id/refund",
			// Checked in the handler rather than by `roles`, so another customer's order is a 404 first.
			auth: "required",
			params: { $$strict: "remove", id: "string", amount: { type: "number", integer: true, positive: true, optional: true }, reason: { type: "string", min: 1, max: 500 } },
			async handler(this: OrdersThis, ctx: Context<{ id: string; amount?: number; reason: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				if (ctx.meta.user!.role !== "admin") throw new ForbiddenError("Requires role: admin");
				if (order.paymentStatus !== "succeeded" && order.paymentStatus !== "partially_refunded") {
					throw new ConflictError(`Nothing to refund: payment is ${order.paymentStatus}`, "NOT_REFUNDABLE", { paymentStatus: order.paymentStatus });
				}
				const refundable = order.paidAmount - order.refundedAmount;
				const amount = ctx.params.amount ?? refundable;
				if (amount > refundable) throw invalidField("amount", `At most ${refundable} can be refunded`, "numberMax");
				// A retried request with the same Idempotency-Key refunds once; two different refunds of the same amount are both allowed.
				const refundKey = `${order.id}-admin-${ctx.meta.idempotencyKey ?? crypto.randomUUID()}`;
				const refund = await ctx.call<any, any>("payments.refund", { orderId: order.id, amount, reason: ctx.params.reason, refundKey });
				await this.recordRefund(order.id, refund, ctx.params.reason);
				return refund;
			},
		},

		hasDeliveredProduct: {
			visibility: "public",
			params: { userId: "string", productId: "string" },
			async handler(this: OrdersThis, ctx: Context<{ userId: string; productId: string }>) {
				const n = await this.db.orders.count({ userId: ctx.params.userId, status: "delivered", "items.productId": ctx.params.productId });
				return { delivered: n > 0 };
			},
		},
	},

	methods: {
		/** Payment news, live (with its ctx) or caught up from the payments outbox (ctx null). */
		async onPaymentEvent(event: string, payload: Record<string, any>, ctx: Context | null) {
			if (typeof payload?.orderId !== "string") return;
			if (event === "payment.succeeded") await this.paymentSucceeded(ctx, payload);
			else if (event === "payment.failed") await this.paymentFailed(ctx, payload);
			// Refunds made outside this service (e.g. in Stripe's dashboard) still show on the order.
			else if (event === "payment.refunded") await this.recordRefund(payload.orderId, { id: payload.refundId, amount: payload.amount }, null);
		},

		/** The provider confirmed a payment later (webhook). Replayed, it finishes what the first delivery left pending. */
		async paymentSucceeded(ctx: Context | null, { orderId, paymentId, amount }: { orderId: string; paymentId: string; amount: number }) {
			await this.recordPaymentSucceeded(orderId, paymentId, amount);
			await this.tryFollowUps(ctx, orderId);
		},

		/** A payment left pending at checkout failed later: the order is cancelled and its stock released. */
		async paymentFailed(ctx: Context | null, { orderId, reason }: { orderId: string; reason?: string }) {
			await this.recordPaymentFailed(orderId, reason ?? null);
			await this.tryFollowUps(ctx, orderId);
		},

		/**
		 * A pending, checked-out order is confirmed (its stock committed and the confirmation announced
		 * next); one cancelled meanwhile keeps the money only until it is refunded. Null when neither applies.
		 */
		async recordPaymentSucceeded(orderId: string, paymentId: string, amount: number): Promise<Order | null> {
			const confirmed = await this.changeOrder(orderId, {
				when: { status: "pending", paymentStatus: "pending", "saga.state": "completed" },
				set: { paymentStatus: "succeeded", paidAmount: amount, status: "confirmed", confirmedAt: new Date() },
				event: [
					{ type: "payment_succeeded", data: { paymentId, amount } },
					{ type: "confirmed", data: { paymentId } },
				],
				followUps: FOLLOW_UPS_AFTER.confirmed,
			});
			if (confirmed) return confirmed;
			// Paid after the order was cancelled (a late 3-D Secure, a charge that timed out): give it back.
			return this.changeOrder(orderId, {
				when: { status: "cancelled", paymentStatus: "pending", "saga.state": { $ne: "running" } },
				set: { paymentStatus: "succeeded", paidAmount: amount },
				event: { type: "payment_succeeded", data: { paymentId, amount, late: true } },
				followUps: FOLLOW_UPS_AFTER.paidLate,
			});
		},

		/** The failure and the cancel are one update: there is no moment with a failed payment on a live order. */
		recordPaymentFailed(orderId: string, reason: string | null): Promise<Order | null> {
			return this.changeOrder(orderId, {
				when: { status: "pending", paymentStatus: "pending", "saga.state": "completed" },
				set: { paymentStatus: "failed", status: "cancelled", cancelReason: "payment_failed", cancelledAt: new Date() },
				event: [
					{ type: "payment_failed", data: { reason } },
					{ type: "cancelled", data: { reason: "payment_failed" } },
				],
				followUps: FOLLOW_UPS_AFTER.cancelled,
			});
		},

		/** The checkout, step by step; each compensation sits next to the step it undoes. */
		checkoutSteps(): SagaStep<Checkout>[] {
			return [
				{ name: "snapshotCart", run: (c) => this.snapshotCart(c) },
				{ name: "loadAddress", run: (c) => this.loadAddress(c) },
				{ name: "createOrder", run: (c) => this.createOrder(c), compensate: (c, cause) => this.cancelFailedOrder(c, cause) },
				{ name: "reserveStock", run: (c) => this.reserveStock(c), compensate: (c) => this.releaseStock(c, "checkout_failed") },
				{ name: "consumePromo", run: (c) => this.consumePromo(c), compensate: (c) => this.releasePromo(c) },
				{ name: "charge", run: (c) => this.charge(c), compensate: (c) => this.refundCharge(c) },
				{ name: "confirmOrder", run: (c) => this.confirmOrder(c) },
				{ name: "commitStock", run: (c) => this.commitStock(c) },
				{ name: "clearCart", run: (c) => this.clearCart(c) },
				{ name: "publishOrder", run: (c) => this.publishOrder(c) },
			];
		},

		async snapshotCart(c: Checkout) {
			const cart = await this.callFrom(c, "cart.snapshot", { userId: c.userId });
			// Lines that cannot be bought any more would silently drop out of the order: the customer reviews
			// the cart first. A short stock is for the reservation to decide, atomically.
			const blocking = (cart.problems ?? []).filter((p: { type: string }) => BLOCKING_CART_PROBLEMS.has(p.type));
			if (blocking.length) throw new ConflictError("Some items in your cart can no longer be bought", "CART_HAS_PROBLEMS", { problems: blocking });
			if (!cart.items?.length) throw new ConflictError("Your cart is empty", "CART_EMPTY");
			c.cart = cart;
		},

		async loadAddress(c: Checkout) {
			try {
				c.address = await this.callFrom(c, "users.getAddress", { userId: c.userId, addressId: c.params!.shippingAddressId });
			} catch (err: any) {
				if (err?.code === 404) throw invalidField("shippingAddressId", "No such shipping address", "notFound");
				throw err;
			}
		},

		async createOrder(c: Checkout) {
			const cart = c.cart!;
			// Prices come from the cart service's snapshot, priced from the catalog now; never from the client.
			const items = orderLinesOf(cart.items);
			const totals = computeCheckoutTotals(items, cart.discount ?? 0, this.shippingRates);
			const now = new Date();
			const { id: addressId, userId: _u, ...address } = c.address as Record<string, unknown>;
			const order = await this.db.orders.insert({
				id: c.orderId,
				number: await this.nextOrderNumber(now),
				userId: c.userId,
				status: "pending",
				paymentStatus: "pending",
				items,
				...totals,
				currency: cart.currency,
				promoCode: cart.promoCode ?? null,
				shippingAddress: { ...address, addressId },
				payment: null,
				paidAmount: 0,
				refundedAmount: 0,
				refunds: {},
				trackingNumber: null,
				cancelReason: null,
				pendingActions: [],
				followUpLease: null,
				announcements: {},
				eventSeq: 1,
				events: [createdEvent(now)],
				saga: { state: "running", completed: c.log?.carry("createOrder") ?? [], compensated: [] },
				createdAt: now,
				updatedAt: now,
			});
			c.order = order as unknown as Order;
			c.log?.carried(order.saga.completed);
		},

		async cancelFailedOrder(c: Checkout, cause: unknown) {
			const reason = cancelReasonOf(cause);
			await this.changeOrder(c.orderId, {
				when: { status: { $in: OrderStateMachine.sourcesOf("cancelled") } },
				set: { status: "cancelled", cancelReason: reason, cancelledAt: new Date() },
				event: { type: "cancelled", data: { reason, detail: (cause as Error | undefined)?.message ?? null } },
			});
		},

		async reserveStock(c: Checkout) {
			const items = c.order!.items.map((l) => ({ variantId: l.variantId, quantity: l.quantity }));
			await this.callFrom(c, "products.reserve", { orderId: c.orderId, items });
			await this.appendEvent(c.orderId, "stock_reserved", { items }, { log: c.log, step: "reserveStock" });
		},

		async releaseStock(c: Checkout, reason: string) {
			const res = await this.callFrom(c, "products.release", { orderId: c.orderId, reason });
			if (res?.released !== false) await this.appendEvent(c.orderId, "stock_released", { reason });
		},

		async consumePromo(c: Checkout) {
			const code = c.order!.promoCode;
			if (!code) return;
			await this.callFrom(c, "cart.consumePromo", { code, orderId: c.orderId });
			await this.appendEvent(c.orderId, "promo_consumed", { code }, { log: c.log, step: "consumePromo" });
		},

		async releasePromo(c: Checkout) {
			const order = c.order ?? (await this.db.orders.findById(c.orderId));
			if (!order?.promoCode) return;
			await this.callFrom(c, "cart.releasePromo", { code: order.promoCode, orderId: c.orderId });
			await this.appendEvent(c.orderId, "promo_released", { code: order.promoCode });
		},

		async charge(c: Checkout) {
			const order = c.order!;
			// A fully discounted order with free shipping has nothing to charge.
			if (order.total === 0) {
				await this.changeOrder(c.orderId, { set: { paymentStatus: "succeeded" }, event: { type: "payment_succeeded", data: { paymentId: null, amount: 0 } } }, { log: c.log, step: "charge" });
				return;
			}
			let payment: any;
			try {
				payment = await this.callFrom(c, "payments.charge", { orderId: c.orderId, userId: c.userId, amount: order.total, currency: order.currency, paymentMethod: c.params!.paymentMethod });
			} catch (err: any) {
				if (err?.code === 402) {
					await this.changeOrder(c.orderId, { set: { paymentStatus: "failed" }, event: { type: "payment_failed", data: { reason: err.message, type: err.type ?? null } } });
				}
				throw err;
			}
			const paymentRef = { id: payment.id, cardBrand: payment.cardBrand, cardLast4: payment.cardLast4 };
			if (payment.status !== "succeeded") {
				c.awaitingPayment = true;
				await this.changeOrder(c.orderId, { set: { payment: paymentRef } }, { log: c.log, step: "charge" });
				return;
			}
			await this.changeOrder(
				c.orderId,
				{
					when: { paymentStatus: "pending" },
					set: { paymentStatus: "succeeded", paidAmount: payment.amount, payment: paymentRef },
					event: { type: "payment_succeeded", data: { paymentId: payment.id, amount: payment.amount } },
				},
				{ log: c.log, step: "charge" },
			);
		},

		async refundCharge(c: Checkout) {
			const order = (await this.db.orders.findById(c.orderId)) as Order | null;
			if (!order || order.paidAmount - order.refundedAmount <= 0) return;
			// The key is derived from the order, so a repeated compensation cannot refund twice.
			await this.refundRest(c, "checkout_failed", `${c.orderId}-saga`);
		},

		async confirmOrder(c: Checkout) {
			if (c.awaitingPayment) return;
			const confirmed = await this.changeOrder(
				c.orderId,
				{
					when: { status: { $in: OrderStateMachine.sourcesOf("confirmed") } },
					set: { status: "confirmed", confirmedAt: new Date() },
					event: { type: "confirmed", data: {} },
				},
				{ log: c.log, step: "confirmOrder" },
			);
			if (!confirmed) throw new ConflictError("The order could not be confirmed", "INVALID_TRANSITION");
			c.order = confirmed;
		},

		async commitStock(c: Checkout) {
			if (c.awaitingPayment) return;
			await this.callFrom(c, "products.commit", { orderId: c.orderId });
			await this.appendEvent(c.orderId, "stock_committed", {}, { log: c.log, step: "commitStock" });
		},

		async clearCart(c: Checkout) {
			// A recovered checkout has no snapshot: the cart may hold new items by now, so it stays.
			if (!c.cart) return;
			// The order is paid: a cart that cannot be cleared (or changed meanwhile) is no reason to undo it.
			try {
				await this.callFrom(c, "cart.clear", { userId: c.userId, version: c.cart!.version });
			} catch (err) {
				this.logger.warn(`Cart of user ${c.userId} not cleared after order ${c.orderId}:`, (err as Error).message);
			}
		},

		async publishOrder(c: Checkout) {
			const order: Order = (await this.db.orders.findById(c.orderId)) as any;
			// Run again by recovery, this step may have published just before the node died: the outbox says.
			const since = c.recovering ? new Date(order.createdAt) : null;
			const announcements = [{ event: "order.created", payload: eventPayload(order) }];
			if (order.status === "confirmed") announcements.push({ event: "order.confirmed", payload: eventPayload(order, { checkoutDurationMs: checkoutDurationMs(order) }) });
			await this.publishOnce(c.ctx, announcements, since);
		},

		/** Runs the saga for a claimed key; returns the order as it stands afterwards. */
		async runCheckout(ctx: Context<CheckoutParams, ShopMeta>, orderId: string): Promise<Order> {
			const log = this.sagaLog(orderId);
			const c: Checkout = { ctx, orderId, userId: ctx.meta.user!.id, params: ctx.params, log };
			try {
				await this.checkoutSaga.run(c, log);
			} catch (err) {
				const journal = await log.load();
				const pending = journal.completed.filter((s: string) => !journal.compensated.includes(s));
				await this.db.orders.updateOne(
					{ id: orderId },
					{ $set: { "saga.state": pending.length ? "compensation_failed" : "compensated" }, $addToSet: { "saga.completed": { $each: log.carry() } } },
				);
				throw err;
			}
			await this.completeSaga(orderId, c.awaitingPayment, log);
			if (c.awaitingPayment) await this.tryFollowUps(ctx, orderId);
			return (await this.db.orders.findById(orderId)) as any;
		},

		/**
		 * Runs the compensations of an order's checkout that are not done yet (recovery after a crash, or
		 * an operator's retry). Each one ran at most once before, so calling this again changes nothing.
		 */
		async compensateCheckout(orderId: string, cause?: unknown) {
			const order = await this.db.orders.findById(orderId);
			if (!order) throw new NotFoundError("Order");
			const c: Checkout = { ctx: null, orderId, userId: order.userId, order: order as any };
			const failures = await this.checkoutSaga.compensate(c, this.sagaLog(orderId), cause);
			await this.db.orders.updateOne({ id: orderId, "saga.state": { $ne: "completed" } }, { $set: { "saga.state": failures.length ? "compensation_failed" : "compensated" } });
			return failures;
		},

		/**
		 * The saga is done; one that ended waiting for its payment also records a look at the payment,
		 * as news of it that came while the saga ran was ignored then.
		 */
		completeSaga(orderId: string, awaitingPayment: boolean, log: CarriedSagaLog) {
			const addToSet: Record<string, unknown> = { "saga.completed": { $each: log.carry() } };
			if (awaitingPayment) addToSet.pendingActions = { $each: [...FOLLOW_UPS_AFTER.awaitingPayment] };
			return this.db.orders.updateOne({ id: orderId }, { $set: { "saga.state": "completed" }, $addToSet: addToSet });
		},

		/**
		 * Finishes what a crash (or a failed call) interrupted: checkouts left "running" or with a
		 * compensation pending, and orders with follow-ups still pending.
		 */
		async recoverInterrupted(olderThanMs: number) {
			const stuck = await this.db.orders.find(
				{
					$or: [{ "saga.state": { $in: ["running", "compensation_failed"] } }, { "pendingActions.0": { $exists: true } }, { cancellation: "pending" }],
					updatedAt: { $lt: new Date(Date.now() - olderThanMs) },
				},
				{ limit: 100 },
			);
			for (const found of stuck) {
				// Only one node takes each order: the claim is a compare-and-set on updatedAt.
				const order = (await this.db.orders.updateOne({ id: found.id, updatedAt: found.updatedAt }, { $set: { updatedAt: new Date() } })) as unknown as Order | null;
				if (!order) continue;
				try {
					if (order.cancellation === "pending") await this.adoptLegacyCancellation(order.id);
					if (order.saga?.state === "running" || order.saga?.state === "compensation_failed") await this.recoverCheckout(order);
					await this.driveFollowUps(null, order.id);
				} catch (err) {
					this.logger.error(`Recovery of order ${order.id} failed, will retry:`, err);
				}
			}
		},

		/** A checkout that got past the charge rolls forward (the journal skips the done steps); any other is undone. */
		async recoverCheckout(order: Order) {
			let view: ReturnType<typeof orderView> | null = null;
			if (order.saga.state === "running" && order.saga.completed.includes("charge")) {
				const log = this.sagaLog(order.id);
				const c: Checkout = { ctx: null, orderId: order.id, userId: order.userId, order, awaitingPayment: order.paymentStatus !== "succeeded", recovering: true, log };
				try {
					await this.checkoutSaga.run(c, log);
					view = orderView((await this.completeSaga(order.id, !!c.awaitingPayment, log)) as any);
				} catch (err) {
					this.logger.warn(`Interrupted checkout ${order.id} failed to complete and was compensated:`, (err as Error).message);
				}
			} else if ((await this.compensateCheckout(order.id, new Error("checkout interrupted"))).length) {
				return;
			}
			// The key answers with the order from now on, or is freed for a retry.
			if (view) await this.db.idempotency_keys.updateOne({ orderId: order.id, status: "running" }, { $set: { status: "completed", response: view } });
			else await this.db.idempotency_keys.removeMany({ orderId: order.id, status: "running" });
			this.logger.warn(`Recovered interrupted checkout of order ${order.id}: ${view ? "completed" : "compensated"}`);
		},

		/**
		 * The saga journal, kept on the order once it exists (the steps before it have nothing to undo).
		 * Completion marks ride on the steps' own writes (see CarriedSagaLog): no write of their own.
		 */
		sagaLog(orderId: string): CarriedSagaLog {
			return new CarriedSagaLog({
				load: async () => ((await this.db.orders.findById(orderId)) as unknown as Order | null)?.saga ?? null,
				writeCompensated: async (compensated, completed) => {
					await this.db.orders.updateOne({ id: orderId }, { $addToSet: { "saga.compensated": { $each: compensated }, "saga.completed": { $each: completed } } });
				},
			});
		},

		/** Test-only hook: the named checkout step throws before doing anything (NODE_ENV=test only). */
		injectCheckoutFailure(step: string | null) {
			if (process.env.NODE_ENV !== "test") throw new Error("Failure injection is only available under NODE_ENV=test");
			this.failAt = step;
		},

		/** Orders cancelled before follow-ups existed: their release, refund and announcement become follow-ups. */
		adoptLegacyCancellation(orderId: string) {
			return this.db.orders.updateOne(
				{ id: orderId, cancellation: "pending" },
				{ $set: { cancellation: null }, $addToSet: { pendingActions: { $each: [...FOLLOW_UPS_AFTER.cancelled] } } },
			);
		},

		/** Drives the follow-ups and logs a failure: for callers whose own change already took effect. */
		async tryFollowUps(ctx: Context | null, orderId: string) {
			try {
				await this.driveFollowUps(ctx, orderId);
			} catch (err) {
				this.logger.warn(`Follow-ups of order ${orderId} failed; a replay or the recovery timer finishes them:`, (err as Error).message);
			}
		},

		/**
		 * Drives the order's pending follow-ups, in order, to completion. One caller at a time, under a
		 * lease: a caller that finds it taken leaves the work to the holder, which looks again after
		 * letting go (and a holder that died loses it when it expires). A follow-up that throws stays
		 * pending and its error is thrown. Returns the order as it stands afterwards.
		 */
		async driveFollowUps(ctx: Context | null, orderId: string): Promise<Order | null> {
			for (let round = 0; round < FOLLOW_UP_ROUNDS; round++) {
				const now = new Date();
				const lease = new Date(now.getTime() + this.settings.followUpLeaseMs);
				let order = (await this.db.orders.updateOne({ id: orderId, ...followUpsClaimable(now) }, { $set: { followUpLease: lease } })) as unknown as Order | null;
				if (!order) break;
				try {
					for (const followUp of [...order.pendingActions]) {
						order = await this.runFollowUp(ctx, order, followUp, lease);
						// The lease ran out and another caller took the follow-ups over: it finishes them.
						if (!order) return (await this.db.orders.findById(orderId)) as unknown as Order | null;
					}
				} finally {
					await this.db.orders.updateOne({ id: orderId, followUpLease: lease }, { $set: { followUpLease: null } });
				}
			}
			return (await this.db.orders.findById(orderId)) as unknown as Order | null;
		},

		/**
		 * Does one follow-up (safe to redo: it may have taken effect just before a crash) and records it
		 * done, with its event-log entry, while the lease is still ours. Returns the order, or null
		 * when the lease was lost.
		 */
		async runFollowUp(ctx: Context | null, order: Order, followUp: FollowUp, lease: Date): Promise<Order | null> {
			const c: Checkout = { ctx, orderId: order.id, userId: order.userId, order };
			const done = (event?: OrderEventEntry) => this.changeOrder(order.id, { when: { followUpLease: lease, pendingActions: followUp }, done: followUp, event });
			const announcement = announcementOf(followUp);
			if (announcement) return this.announce(ctx, order, followUp, announcement, lease);
			switch (followUp) {
				case "settlePayment": {
					const payment = await this.callFrom(c, "payments.getByOrder", { orderId: order.id });
					// The follow-ups of what the payment's state says are taken in the next round of the drive.
					if (payment && PAID_STATUSES.has(payment.status)) await this.recordPaymentSucceeded(order.id, payment.id, payment.amount);
					else if (payment?.status === "failed") await this.recordPaymentFailed(order.id, payment.failureReason ?? null);
					return done();
				}
				case "commitStock": {
					const res = await this.callFrom(c, "products.commit", { orderId: order.id });
					if (res?.committed) return done({ type: "stock_committed", data: {} });
					this.logger.error(`Order ${order.id} is paid but its reservation could not be committed (released meanwhile?); check its stock by hand`);
					return done();
				}
				case "releaseStock": {
					const reason = order.cancelReason ?? "cancelled";
					const res = await this.callFrom(c, "products.release", { orderId: order.id, reason });
					// Also when an earlier attempt put the stock back just before a crash: the entry is written here, once.
					return done(res?.released || res?.alreadyReleased ? { type: "stock_released", data: { reason } } : undefined);
				}
				case "releasePromo": {
					if (!order.promoCode) return done();
					await this.callFrom(c, "cart.releasePromo", { code: order.promoCode, orderId: order.id });
					return done({ type: "promo_released", data: { code: order.promoCode } });
				}
				case "refund":
				case "refundLatePayment": {
					const owed = refundOwed(order, followUp);
					if (owed) {
						try {
							await this.refundRest(c, owed.reason, owed.refundKey);
						} catch (err: any) {
							// Refunded meanwhile by other means (an admin, the provider's dashboard): nothing is owed any more.
							if (!NOTHING_TO_REFUND.has(err?.type)) throw err;
							this.logger.warn(`Refund ${owed.refundKey} of order ${order.id} not needed: ${err.message}`);
						}
					}
					return done();
				}
				default:
					throw new Error(`Unknown follow-up ${followUp as string}`);
			}
		},

		/**
		 * Publishes an announcement once. Its first attempt is marked on the order (while checking the
		 * lease is still ours) before publishing, so a later attempt, after a crash that may have come
		 * between publishing and recording it done, looks in the outbox first.
		 */
		async announce(ctx: Context | null, order: Order, followUp: FollowUp, what: Announcement, lease: Date): Promise<Order | null> {
			const held = { followUpLease: lease, pendingActions: followUp };
			const firstAttempt = order.announcements?.[what];
			const current = (await this.db.orders.updateOne(
				{ id: order.id, ...held },
				{ $set: firstAttempt ? { followUpLease: lease } : { [`announcements.${what}`]: new Date() } },
			)) as unknown as Order | null;
			if (!current) return null;
			const { event, payload } = announcementEvent(current, what);
			await this.publishOnce(ctx, [{ event, payload }], firstAttempt ? new Date(firstAttempt) : null);
			return this.changeOrder(order.id, { when: held, done: followUp });
		},

		/** Publishes the order's events (together), each unless `since` is given and the outbox holds it from then on. */
		async publishOnce(ctx: Context | null, announcements: Array<{ event: string; payload: Record<string, unknown> & { orderId: string } }>, since: Date | null) {
			const missing = [];
			for (const a of announcements) {
				if (since && (await this.outbox.findOne({ event: a.event, "payload.orderId": a.payload.orderId, createdAt: { $gte: since } }))) continue;
				missing.push(a);
			}
			await this.publishAll(ctx, missing);
		},

		/** Refunds whatever is left of the payment; the key makes a repeated call refund once. */
		async refundRest(c: Checkout, reason: string, refundKey: string) {
			const refund = await this.callFrom(c, "payments.refund", { orderId: c.orderId, reason, refundKey });
			// A refund the provider refused cannot be retried under the same key: it needs a person.
			if (refund.status === "failed") this.logger.error(`Refund ${refundKey} of order ${c.orderId} was refused by the provider; refund it by hand`);
			await this.recordRefund(c.orderId, refund, reason);
		},

		/** Counts a refund on the order once (by refund id), and lets the payment status follow. */
		async recordRefund(orderId: string, refund: { id: string; amount: number; status?: string }, reason: string | null) {
			if (refund.status === "failed") return;
			const key = `refunds.${String(refund.id).replace(/[.$]/g, "_")}`;
			const counted = await this.changeOrder(orderId, {
				when: { [key]: { $exists: false } },
				set: { [key]: refund.amount },
				inc: { refundedAmount: refund.amount },
				event: { type: "refunded", data: { refundId: refund.id, amount: refund.amount, reason } },
			});
			// Counted before (a replay): the status is set again, in case the node died between the two writes.
			const current = counted ?? ((await this.db.orders.findById(orderId)) as unknown as Order | null);
			if (!current || current.refundedAmount <= 0) return;
			// Guarded by the amount just read, so a slower concurrent refund cannot set an older status.
			await this.db.orders.updateOne(
				{ id: orderId, refundedAmount: current.refundedAmount },
				{ $set: { paymentStatus: paymentStatusAfterRefund(current.paidAmount, current.refundedAmount) } },
			);
		},

		/**
		 * One change of an order: a conditional update (`when`) that also appends its events to the
		 * log and records follow-ups. Returns the updated order, or null when `when` did not hold.
		 */
		async changeOrder(orderId: string, change: OrderChange, journal?: SagaJournalRef): Promise<Order | null> {
			const now = new Date();
			const update = orderUpdate(change, now);
			// A checkout step's change also records the step (and marks still waiting) in the saga's journal.
			const marks = journal?.log?.carry(journal.step) ?? [];
			if (marks.length) update.$addToSet = { ...(update.$addToSet as object), "saga.completed": { $each: marks } };
			const order = await this.db.orders.updateOne({ id: orderId, ...change.when }, update);
			if (!order) return null;
			journal?.log?.carried(marks);
			return order as unknown as Order;
		},

		appendEvent(orderId: string, type: string, data: Record<string, unknown>, journal?: SagaJournalRef) {
			return this.changeOrder(orderId, { event: { type, data } }, journal);
		},

		async nextOrderNumber(now: Date): Promise<string> {
			const day = orderNumberDay(now);
			const counter = await this.db.counters.updateOne({ id: `order-number-${day}` }, { $inc: { value: 1 } }, { upsert: true });
			return formatOrderNumber(now, counter!.value);
		},

		/** The order if the caller may see it: their own, or any for an admin. Otherwise 404, never 403. */
		async visibleOrder(ctx: Context<unknown, ShopMeta>, id: string): Promise<Order> {
			const order = await this.db.orders.findById(id);
			const user = ctx.meta.user!;
			if (!order || (order.userId !== user.id && user.role !== "admin")) throw new NotFoundError("Order");
			return order as unknown as Order;
		},

		/** The answer to a repeated key: the first request's order (200), its error, or 409 on another body. */
		async replayCheckout(ctx: Context<CheckoutParams, ShopMeta>, first: IdempotencyRecord, fingerprint: string) {
			if (first.fingerprint !== fingerprint) throw new ConflictError("This Idempotency-Key was already used with a different request", "IDEMPOTENCY_KEY_REUSED");
			const record = await awaitIdempotentOutcome(this.db.idempotency_keys as unknown as IdempotencyStore, first, this.settings.idempotencyWaitMs);
			if (!record) throw new ConflictError("The earlier request with this Idempotency-Key failed, retry", "IDEMPOTENCY_KEY_RELEASED");
			if (record.status === "running") throw new ConflictError("A request with this Idempotency-Key is still in progress", "IDEMPOTENCY_KEY_IN_PROGRESS");
			if (record.status === "failed") throw replayError(record.error!);
			ctx.meta.$statusCode = 200;
			return record.response;
		},

		/** Calls on behalf of the checkout's request, or as the service itself when recovering. */
		callFrom(c: Checkout, action: string, params: Record<string, unknown>) {
			return c.ctx ? c.ctx.call(action, params) : this.broker.call(action, params);
		},
	},

	created(this: OrdersThis) {
		const cfg = readConfig();
		this.shippingRates = this.settings.shippingRates ?? { flatCents: cfg.shippingFlatCents, freeThresholdCents: cfg.freeShippingThresholdCents };
		this.failAt = process.env.NODE_ENV === "test" ? this.settings.checkoutFailAt : null;
		const steps = (this.checkoutSteps() as SagaStep<Checkout>[]).map((step) => ({
			...step,
			run: async (c: Checkout) => {
				if (this.failAt === step.name) throw new Errors.MoleculerError(`Injected failure at ${step.name}`, 500, "INJECTED_FAILURE");
				await step.run(c);
			},
		}));
		this.checkoutSaga = new Saga<Checkout>("checkout", steps, {
			onCompensationError: ({ step, error }) => this.logger.error(`Checkout compensation ${step} failed; it stays pending:`, error),
		});
	},

	started(this: OrdersThis) {
		// Far beyond any request timeout, so a checkout still running on another node is never taken.
		const staleMs = this.settings.staleCheckoutMs;
		this.recoveryTimer = setInterval(() => {
			this.recoverInterrupted(staleMs).catch((err: Error) => this.logger.error("Order recovery failed:", err));
		}, Math.min(staleMs, 5 * 60_000));
		this.recoveryTimer.unref();
	},

	stopped(this: OrdersThis) {
		clearInterval(this.recoveryTimer);
	},
};

export default OrdersService;
