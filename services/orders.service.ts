/**
 * Orders: the checkout saga, the order state machine and each order's event log.
 *
 * Checkout (POST /api/orders) reads as its story in `checkoutSteps()`: snapshot the cart → load the
 * address → create the order pending → reserve stock → consume the promo → charge → confirm →
 * commit stock → clear the cart → publish. A failure undoes the earlier steps in reverse (release
 * stock, give the promo back, refund, cancel the order with the reason). The saga's journal lives
 * on the order, so compensating again never refunds or releases twice.
 *
 * Every change of an order is one conditional update (a status compare-and-set) that also bumps the
 * order's event counter, followed by an `order_events` entry with that sequence number.
 *
 * Payment news (a 3-D Secure payment settled by the webhook, a refund made at Stripe) also comes
 * from the payments outbox, so what arrived while this service was down is applied when it starts;
 * each handler is a conditional update, so an event applied twice changes nothing.
 */
import crypto from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type Collections } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { OutboxConsumerMixin } from "../mixins/outbox-consumer.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import { newId, type CollectionSpec, type Query } from "../mixins/collection";
import type { ShopMeta } from "../mixins/types";
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, invalidField } from "../lib/errors";
import { multiplyCents } from "../lib/money";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { Saga, type SagaLog, type SagaStep } from "../lib/saga";
import { cancelReasonOf, eventPayload, orderView, OrderStateMachine, ORDER_STATUSES, paymentStatusAfterRefund, type Order, type OrderLine, type OrderStatus } from "../lib/order-state";
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
}

interface OrderChange {
	when?: Query;
	set?: Record<string, unknown>;
	inc?: Record<string, number>;
	event: { type: string; data?: Record<string, unknown> };
}

interface OrdersSettings {
	rest: string;
	/** How long a repeated checkout waits for the first one with its key to finish. */
	idempotencyWaitMs: number;
	/** Test-only (NODE_ENV=test): the checkout step that throws; see injectCheckoutFailure. */
	checkoutFailAt: string | null;
	/** Overrides SHIPPING_FLAT_CENTS / FREE_SHIPPING_THRESHOLD_CENTS (tests). */
	shippingRates: ShippingRates | null;
	/** A checkout "running" for longer than this was interrupted by a crash and gets recovered. */
	staleCheckoutMs: number;
}

interface OrdersThis extends Service<OrdersSettings> {
	db: Collections;
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
	order_events: {
		fields: { orderId: String, seq: Number, type: String, data: Object, createdAt: Date },
		indexes: [{ fields: { orderId: 1, seq: 1 }, unique: true }],
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
	settings: { rest: "/", idempotencyWaitMs: 8000, checkoutFailAt: null, shippingRates: null, staleCheckoutMs: 15 * 60_000 },


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
				const [rows, total] = await Promise.all([
					this.db.orders.find(query, { sort: { createdAt: -1 }, offset: w.offset, limit: w.limit }),
					this.db.orders.count(query),
				]);
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
				const events = await this.db.order_events.find({ orderId: order.id }, { sort: { seq: 1 } });
				return events.map(({ seq, type, data, createdAt }) => ({ seq, type, data, createdAt }));
			},
		},

		cancel: {
			rest: "POST /orders/:id/cancel",
			auth: "required",
			params: { $$strict: "remove", id: "string", reason: { type: "string", max: 500, optional: true } },
			async handler(this: OrdersThis, ctx: Context<{ id: string; reason?: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				// An interrupted cancel (stock or refund call failed) resumes instead of answering 409.
				if (order.status === "cancelled" && order.cancellation === "pending") return orderView(await this.finishCancellation(ctx, order));
				if (order.saga?.state === "running") throw new ConflictError("The order's checkout is still in progress", "CHECKOUT_IN_PROGRESS");
				OrderStateMachine.assert(order.status, "cancelled");
				const reason = ctx.meta.user!.role === "admin" ? "cancelled_by_shop" : "customer_request";
				const cancelled = await this.changeOrder(order.id, {
					when: { status: { $in: OrderStateMachine.sourcesOf("cancelled") }, "saga.state": { $ne: "running" } },
					set: { status: "cancelled", cancelReason: reason, cancellation: "pending", cancelledAt: new Date() },
					event: { type: "cancelled", data: { reason, note: ctx.params.reason ?? null, by: ctx.meta.user!.role } },
				});
				// Lost the race against another transition (e.g. shipped meanwhile): the machine decides.
				if (!cancelled) {
					const now = await this.db.orders.findById(order.id);
					OrderStateMachine.assert(now!.status as OrderStatus, "cancelled");
					throw new ConflictError("The order changed meanwhile, try again", "CONCURRENT_UPDATE");
				}
				return orderView(await this.finishCancellation(ctx, cancelled));
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
				});
				if (!changed) throw new ConflictError("The order changed meanwhile, try again", "CONCURRENT_UPDATE", { from, to });
				await this.publish(ctx, "order.status_changed", eventPayload(changed, { from, to, trackingNumber: changed.trackingNumber }));
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

		/** The provider confirmed a payment later (webhook): a pending order whose checkout finished is confirmed. */
		async paymentSucceeded(ctx: Context | null, { orderId, paymentId, amount }: { orderId: string; paymentId: string; amount: number }) {
			if (await this.confirmPaidOrder(ctx, orderId, paymentId, amount)) return;
			// Paid after the order was cancelled (a late 3-D Secure, a charge that timed out): give it back.
			const late = await this.changeOrder(orderId, {
				when: { status: "cancelled", paymentStatus: "pending", "saga.state": { $ne: "running" } },
				set: { paymentStatus: "succeeded", paidAmount: amount },
				event: { type: "payment_succeeded", data: { paymentId, amount, late: true } },
			});
			if (late) await this.refundRest({ ctx, orderId, userId: late.userId }, "order_cancelled", `${orderId}-late`);
		},

		/** A payment left pending at checkout failed later: the order is cancelled and its stock released. */
		async paymentFailed(ctx: Context | null, { orderId, reason }: { orderId: string; reason?: string }) {
			const failed = await this.changeOrder(orderId, {
				when: { status: "pending", paymentStatus: "pending", "saga.state": "completed" },
				set: { paymentStatus: "failed" },
				event: { type: "payment_failed", data: { reason: reason ?? null } },
			});
			if (!failed) return;
			const cancelled = await this.changeOrder(failed.id, {
				when: { status: "pending" },
				set: { status: "cancelled", cancelReason: "payment_failed", cancellation: "pending", cancelledAt: new Date() },
				event: { type: "cancelled", data: { reason: "payment_failed" } },
			});
			if (cancelled) await this.finishCancellation(ctx, cancelled);
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
			const items: OrderLine[] = cart.items.map((i: any) => ({
				productId: i.productId,
				variantId: i.variantId,
				sku: i.sku,
				name: i.name,
				variantName: i.variantName,
				quantity: i.quantity,
				unitPrice: i.unitPrice,
				lineTotal: multiplyCents(i.unitPrice, i.quantity),
			}));
			// Prices come from the cart service's snapshot, priced from the catalog now; never from the client.
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
				cancellation: null,
				eventSeq: 1,
				saga: { state: "running", completed: [], compensated: [] },
				createdAt: now,
				updatedAt: now,
			});
			c.order = order as unknown as Order;
			const { number, currency, promoCode, shippingAddress } = c.order;
			await this.db.order_events.insert({ orderId: c.orderId, seq: 1, type: "created", data: { number, userId: c.userId, items, ...totals, currency, promoCode, shippingAddress }, createdAt: now });
		},

		async cancelFailedOrder(c: Checkout, cause: unknown) {
			const reason = cancelReasonOf(cause);
			await this.changeOrder(c.orderId, {
				when: { status: { $in: OrderStateMachine.sourcesOf("cancelled") } },
				set: { status: "cancelled", cancelReason: reason, cancellation: "done", cancelledAt: new Date() },
				event: { type: "cancelled", data: { reason, detail: (cause as Error | undefined)?.message ?? null } },
			});
		},

		async reserveStock(c: Checkout) {
			const items = c.order!.items.map((l) => ({ variantId: l.variantId, quantity: l.quantity }));
			await this.callFrom(c, "products.reserve", { orderId: c.orderId, items });
			await this.appendEvent(c.orderId, "stock_reserved", { items });
		},

		async releaseStock(c: Checkout, reason: string) {
			const res = await this.callFrom(c, "products.release", { orderId: c.orderId, reason });
			if (res?.released !== false) await this.appendEvent(c.orderId, "stock_released", { reason });
		},

		async consumePromo(c: Checkout) {
			const code = c.order!.promoCode;
			if (!code) return;
			await this.callFrom(c, "cart.consumePromo", { code, orderId: c.orderId });
			await this.appendEvent(c.orderId, "promo_consumed", { code });
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
				await this.changeOrder(c.orderId, { set: { paymentStatus: "succeeded" }, event: { type: "payment_succeeded", data: { paymentId: null, amount: 0 } } });
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
				await this.db.orders.updateOne({ id: c.orderId }, { $set: { payment: paymentRef } });
				return;
			}
			await this.changeOrder(c.orderId, {
				when: { paymentStatus: "pending" },
				set: { paymentStatus: "succeeded", paidAmount: payment.amount, payment: paymentRef },
				event: { type: "payment_succeeded", data: { paymentId: payment.id, amount: payment.amount } },
			});
		},

		async refundCharge(c: Checkout) {
			const order = (await this.db.orders.findById(c.orderId)) as Order | null;
			if (!order || order.paidAmount - order.refundedAmount <= 0) return;
			// The key is derived from the order, so a repeated compensation cannot refund twice.
			await this.refundRest(c, "checkout_failed", `${c.orderId}-saga`);
		},

		async confirmOrder(c: Checkout) {
			if (c.awaitingPayment) return;
			const confirmed = await this.changeOrder(c.orderId, {
				when: { status: { $in: OrderStateMachine.sourcesOf("confirmed") } },
				set: { status: "confirmed", confirmedAt: new Date() },
				event: { type: "confirmed", data: {} },
			});
			if (!confirmed) throw new ConflictError("The order could not be confirmed", "INVALID_TRANSITION");
			c.order = confirmed;
		},

		async commitStock(c: Checkout) {
			if (c.awaitingPayment) return;
			await this.callFrom(c, "products.commit", { orderId: c.orderId });
			await this.appendEvent(c.orderId, "stock_committed", {});
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
			await this.publish(c.ctx, "order.created", eventPayload(order));
			if (order.status === "confirmed") await this.publish(c.ctx, "order.confirmed", eventPayload(order, { checkoutDurationMs: Date.now() - new Date(order.createdAt).getTime() }));
		},

		/** Runs the saga for a claimed key; returns the order as it stands afterwards. */
		async runCheckout(ctx: Context<CheckoutParams, ShopMeta>, orderId: string): Promise<Order> {
			const c: Checkout = { ctx, orderId, userId: ctx.meta.user!.id, params: ctx.params };
			const log = this.sagaLog(orderId);
			try {
				await this.checkoutSaga.run(c, log);
			} catch (err) {
				const journal = await log.load();
				const pending = journal.completed.filter((s: string) => !journal.compensated.includes(s));
				await this.db.orders.updateOne({ id: orderId }, { $set: { "saga.state": pending.length ? "compensation_failed" : "compensated" } });
				throw err;
			}
			await this.db.orders.updateOne({ id: orderId }, { $set: { "saga.state": "completed" } });
			if (c.awaitingPayment) {
				// The webhook may have arrived while the saga ran (and was ignored then): look once more.
				const payment = await ctx.call<any, any>("payments.getByOrder", { orderId }).catch(() => null);
				if (payment?.status === "succeeded") await this.confirmPaidOrder(ctx, orderId, payment.id, payment.amount);
			}
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
		 * Finishes what a crash (or a failed call) interrupted: checkouts left "running" or with a
		 * compensation pending, and cancellations whose stock release or refund did not complete.
		 */
		async recoverInterrupted(olderThanMs: number) {
			const stuck = await this.db.orders.find(
				{ $or: [{ "saga.state": { $in: ["running", "compensation_failed"] } }, { cancellation: "pending" }], updatedAt: { $lt: new Date(Date.now() - olderThanMs) } },
				{ limit: 100 },
			);
			for (const found of stuck) {
				// Only one node takes each order: the claim is a compare-and-set on updatedAt.
				const order = (await this.db.orders.updateOne({ id: found.id, updatedAt: found.updatedAt }, { $set: { updatedAt: new Date() } })) as unknown as Order | null;
				if (!order) continue;
				try {
					if (order.cancellation === "pending") await this.finishCancellation(null, order);
					else await this.recoverCheckout(order);
				} catch (err) {
					this.logger.error(`Recovery of order ${order.id} failed, will retry:`, err);
				}
			}
		},

		/** A checkout that got past the charge rolls forward (the journal skips the done steps); any other is undone. */
		async recoverCheckout(order: Order) {
			let view: ReturnType<typeof orderView> | null = null;
			if (order.saga.state === "running" && order.saga.completed.includes("charge")) {
				const c: Checkout = { ctx: null, orderId: order.id, userId: order.userId, order, awaitingPayment: order.paymentStatus !== "succeeded" };
				try {
					await this.checkoutSaga.run(c, this.sagaLog(order.id));
					view = orderView((await this.db.orders.updateOne({ id: order.id }, { $set: { "saga.state": "completed" } })) as any);
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

		/** The saga journal, kept on the order once it exists (the steps before it have nothing to undo). */
		sagaLog(orderId: string): SagaLog {
			const early = { completed: [] as string[], compensated: [] as string[] };
			const union = (a: string[], b: string[] = []) => [...new Set([...a, ...b])];
			return {
				load: async () => {
					const o = await this.db.orders.findById(orderId);
					return { completed: union(early.completed, o?.saga?.completed), compensated: union(early.compensated, o?.saga?.compensated) };
				},
				// Written with the steps before it, so the first write on the new order records those too.
				markCompleted: async (step) => {
					early.completed.push(step);
					await this.db.orders.updateOne({ id: orderId }, { $addToSet: { "saga.completed": { $each: early.completed } } });
				},
				markCompensated: async (step) => {
					early.compensated.push(step);
					await this.db.orders.updateOne({ id: orderId }, { $addToSet: { "saga.compensated": { $each: early.compensated } } });
				},
			};
		},

		/** Test-only hook: the named checkout step throws before doing anything (NODE_ENV=test only). */
		injectCheckoutFailure(step: string | null) {
			if (process.env.NODE_ENV !== "test") throw new Error("Failure injection is only available under NODE_ENV=test");
			this.failAt = step;
		},

		/** After a customer's cancel (or a failed late payment): stock back, promo back, money back, event out. */
		async finishCancellation(ctx: Context<any, ShopMeta> | null, order: Order): Promise<Order> {
			const c: Checkout = { ctx, orderId: order.id, userId: order.userId, order };
			await this.releaseStock(c, order.cancelReason ?? "cancelled");
			await this.releasePromo(c);
			const current: Order = (await this.db.orders.findById(order.id)) as any;
			if (current.paidAmount - current.refundedAmount > 0) {
				await this.refundRest(c, current.cancelReason ?? "cancelled", `${order.id}-cancel`);
			}
			// Only the call that finishes the cancellation announces it.
			const done = await this.db.orders.updateOne({ id: order.id, cancellation: "pending" }, { $set: { cancellation: "done", updatedAt: new Date() } });
			if (done) await this.publish(ctx, "order.cancelled", eventPayload(done as any, { reason: done.cancelReason, refundedAmount: done.refundedAmount }));
			return ((done ?? (await this.db.orders.findById(order.id))) as any) as Order;
		},

		/** Confirms a pending, already checked-out order whose payment settled later; null when none was. */
		async confirmPaidOrder(ctx: Context | null, orderId: string, paymentId: string, amount: number): Promise<Order | null> {
			const settled = { status: "pending", "saga.state": "completed" };
			await this.changeOrder(orderId, {
				when: { ...settled, paymentStatus: "pending" },
				set: { paymentStatus: "succeeded", paidAmount: amount },
				event: { type: "payment_succeeded", data: { paymentId, amount } },
			});
			const confirmed = await this.changeOrder(orderId, {
				when: { ...settled, paymentStatus: "succeeded" },
				set: { status: "confirmed", confirmedAt: new Date() },
				event: { type: "confirmed", data: { paymentId } },
			});
			if (!confirmed) return null;
			await this.callFrom({ ctx, orderId, userId: confirmed.userId }, "products.commit", { orderId });
			await this.appendEvent(orderId, "stock_committed", {});
			await this.publish(ctx, "order.confirmed", eventPayload(confirmed));
			return confirmed;
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
			if (!counted) return;
			// Guarded by the amount just written, so a slower concurrent refund cannot set an older status.
			await this.db.orders.updateOne(
				{ id: orderId, refundedAmount: counted.refundedAmount },
				{ $set: { paymentStatus: paymentStatusAfterRefund(counted.paidAmount, counted.refundedAmount) } },
			);
		},

		/**
		 * One change of an order: a conditional update (`when`) that also takes the next event number,
		 * then the event under that number. Returns the updated order, or null when `when` did not hold.
		 */
		async changeOrder(orderId: string, change: OrderChange): Promise<Order | null> {
			const now = new Date();
			const update: Record<string, unknown> = { $set: { ...change.set, updatedAt: now }, $inc: { ...change.inc, eventSeq: 1 } };
			const order = await this.db.orders.updateOne({ id: orderId, ...change.when }, update);
			if (!order) return null;
			await this.db.order_events.insert({ orderId, seq: order.eventSeq, type: change.event.type, data: change.event.data ?? {}, createdAt: now });
			return order as unknown as Order;
		},

		appendEvent(orderId: string, type: string, data: Record<string, unknown>) {
			return this.changeOrder(orderId, { event: { type, data } });
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
