/**
 * Orders: the checkout saga, the order state machine and each order's event log.
 *
 * Checkout (POST /api/orders) claims its Idempotency-Key here and runs the saga of
 * mixins/checkout-saga.mixin.ts, which reads as its story in `checkoutSteps()`: claim and snapshot
 * the cart → load the address → create the order pending → reserve stock → consume the promo →
 * charge → confirm → commit stock → clear the cart → publish. The claim makes a customer's
 * checkouts of their cart run one at a time, whatever their Idempotency-Keys. A failure undoes the
 * earlier steps in reverse (release stock, give the promo back, refund, cancel the order with the
 * reason, let the cart go). The saga's journal lives on the order, so compensating again never
 * refunds or releases twice.
 *
 * Every change of an order is one conditional update (a status compare-and-set, `changeOrder`
 * below) that also appends its entries to the order's event log, kept on the order (orders stored
 * before that keep the start of their log in `order_events`, read with it).
 *
 * What a change owes afterwards (commit or release stock, return the promo use, refund, announce it)
 * is recorded on the order in that same update (`pendingActions`) and driven to completion by
 * whoever finds it: the caller, a replayed payment event, a retried cancel, the recovery timer (all
 * in mixins/order-follow-ups.mixin.ts). The invariant is spelled out next to FOLLOW_UPS_AFTER in
 * lib/order-state.ts.
 *
 * Payment news (a 3-D Secure payment settled by the webhook, a refund made at Stripe) also comes
 * from the payments outbox, so what arrived while this service was down is applied when it starts;
 * each handler (`onPaymentEvent`, in the follow-ups mixin) is a conditional update, so an event
 * applied twice changes nothing, and a replay finishes the follow-ups an interrupted first delivery
 * left pending.
 */
import crypto from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { OutboxConsumerMixin } from "../mixins/outbox-consumer.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import {
	CheckoutSagaMixin,
	type Checkout,
	type CheckoutParams,
	type CheckoutSagaMethods,
	type CheckoutSagaSettings,
	type CheckoutSagaVars,
	type OrderHostMethods,
	type SagaJournalRef,
} from "../mixins/checkout-saga.mixin";
import { OrderFollowUpsMixin, type OrderFollowUpMethods, type OrderFollowUpSettings, type OrderFollowUpVars } from "../mixins/order-follow-ups.mixin";
import { newId, type CollectionSpec, type Query } from "../mixins/collection";
import type { ShopMeta } from "../mixins/types";
import { BadRequestError, CheckoutBeingUndoneError, ConflictError, ForbiddenError, NotFoundError, ServiceUnavailableError, invalidField } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { oneLineRule } from "../lib/param-rules";
import { processStartedAt } from "../lib/config";
import { brokerRunView, runnerState, SagaTakenOverError } from "../lib/checkout-recovery";
import {
	logIsEmbedded,
	orderEventLog,
	customerEventLog,
	type OrderEvent,
	FOLLOW_UPS_AFTER,
	orderUpdate,
	orderView,
	OrderStateMachine,
	ORDER_STATUSES,
	type Order,
	type OrderChange,
	type OrderStatus,
} from "../lib/order-state";
import {
	adminRefundKey,
	awaitIdempotentOutcome,
	claimIdempotencyKey,
	invalidIdempotencyKey,
	isValidIdempotencyKey,
	orphanedKeyAction,
	replayError,
	requestFingerprint,
	serializeError,
	type IdempotencyRecord,
	type IdempotencyStore,
} from "../lib/idempotency";

const IDEMPOTENCY_TTL_SECONDS = 48 * 3600;
/** replayCheckout's answer when the earlier request failed and freed its key. */
const KEY_FREED = Symbol("key freed");
/**
 * Refusals that pass, so a retry with the same key is not answered them again: a cart held by another
 * checkout (the retry runs once that one is done), an account being erased (the erasure may yet be refused).
 */
const PASSING_REFUSALS = new Set(["CHECKOUT_IN_PROGRESS", "ACCOUNT_CLOSED"]);

interface OwnSettings {
	rest: string;
	/** How long a repeated checkout waits for the first one with its key to finish. */
	idempotencyWaitMs: number;
	/** A key still running this long with no order, or an undone one, lost its request: a retry frees it. */
	orphanedKeyMs: number;
}
/** With the saga's and the follow-ups' settings, whose defaults are in their mixins. */
type OrdersSettings = OwnSettings & CheckoutSagaSettings & OrderFollowUpSettings;

/** The service's own methods: the one way an order changes, and what its actions share. */
interface OrderMethods extends OrderHostMethods {
	visibleOrder(ctx: Context<unknown, ShopMeta>, id: string): Promise<Order>;
	claimCheckoutKey(ctx: Context<CheckoutParams, ShopMeta>, key: string, fingerprint: string): Promise<{ claimed: true; record: IdempotencyRecord } | { claimed: false; answer: unknown }>;
	leftNothingBehind(orderId: string): Promise<boolean>;
	replayCheckout(ctx: Context<CheckoutParams, ShopMeta>, first: IdempotencyRecord, fingerprint: string): Promise<unknown>;
	settleOrphanedKey(record: IdempotencyRecord, staleMs: number): Promise<IdempotencyRecord | null>;
}

type OrdersVars = CheckoutSagaVars & OrderFollowUpVars;
/** Extending what the mixins need also checks that the service and its mixins agree on what they share. */
interface OrdersThis extends Service<OrdersSettings>, OrderMethods, CheckoutSagaMethods, CheckoutSagaVars, OrderFollowUpMethods, OrderFollowUpVars {}

const ORDER_SPECS: Record<string, CollectionSpec> = {
	orders: {
		fields: { number: String, userId: String, status: String, paymentStatus: String, items: Array, total: Number, createdAt: Date },
		// saga.state and pendingActions: the recovery scan looks for the few checkouts running or owing their
		// undoing, and the few orders owing follow-ups.
		// `userId` alone: the embedded store reads a compound index only for a query naming all its fields, so
		// {userId, createdAt} left a customer's order list (and every check of their orders) to read all orders.
		indexes: [{ fields: { number: 1 }, unique: true }, { fields: { userId: 1 } }, { fields: { status: 1 } }, { fields: { "saga.state": 1 } }, { fields: { pendingActions: 1 } }],
	},
	// Only read: the start of the log of orders stored before the log moved onto the order.
	order_events: {
		fields: { orderId: String, seq: Number, type: String, data: Object, createdAt: Date },
		indexes: [{ fields: { orderId: 1, seq: 1 }, unique: true }],
		loadInBackground: true,
	},
	idempotency_keys: {
		fields: { userId: String, key: String, fingerprint: String, orderId: String, status: String, response: Object, error: Object, createdAt: Date, holder: Object },
		indexes: [{ fields: { userId: 1, key: 1 }, unique: true }, { fields: { createdAt: 1 }, expireAfterSeconds: IDEMPOTENCY_TTL_SECONDS }],
	},
	counters: { fields: { value: Number } },
};

/** Why an admin's refund of `amount` cannot be made on this order now, or null. */
function adminRefundRefusal(order: Order, amount: number): Error | null {
	if (order.paymentStatus !== "succeeded" && order.paymentStatus !== "partially_refunded") {
		return new ConflictError(`Nothing to refund: payment is ${order.paymentStatus}`, "NOT_REFUNDABLE", { paymentStatus: order.paymentStatus });
	}
	const refundable = order.paidAmount - order.refundedAmount;
	// Paid in full by a discount (a total of 0): there is no money to give back.
	if (refundable <= 0) return new ConflictError("Nothing to refund: nothing was paid, or all of it is refunded", "NOT_REFUNDABLE", { paidAmount: order.paidAmount, refundedAmount: order.refundedAmount });
	return amount > refundable ? invalidField("amount", `At most ${refundable} can be refunded`, "numberMax") : null;
}

const OrdersService: ServiceSchema<OwnSettings, OrderMethods, OrdersVars, OrdersThis> = {
	name: "orders",
	// Mixins stop in this order and start in the reverse one.
	mixins: [
		CheckoutSagaMixin,
		// Before the consumer and DbMixin: the recovery timer stops first, before the collections close.
		OrderFollowUpsMixin,
		// Before DbMixin: the catch-up stops before the collections close.
		OutboxConsumerMixin({ cursors: "orders_cursors", sources: { payments: ["payment.succeeded", "payment.failed", "payment.refunded", "payment.refund_failed"] }, handler: "onPaymentEvent" }),
		DbMixin("orders", ORDER_SPECS),
		OutboxMixin("orders"),
		HealthMixin,
	],
	settings: { rest: "/", idempotencyWaitMs: 8000, orphanedKeyMs: 2 * 60_000 },

	events: {
		// Alone (the embedded default: no transporter), this node ran every checkout still marked running
		// or owing follow-ups, and every key still running: the process that ran them is gone. Once every
		// local service has started, the checkouts are finished (not after the stale window, their stock
		// held meanwhile), then each key is completed from its order or freed (not on a retry).
		async "$broker.started"(this: OrdersThis) {
			if (this.broker.transit) return;
			// Leases on follow-ups taken by the previous run (ending before its start plus a lease): nobody holds
			// them now. One a request of this run took meanwhile is left alone.
			const before = new Date(processStartedAt().getTime() + this.settings.followUpLeaseMs);
			await this.db.orders.updateMany({ followUpLease: { $gt: new Date(0), $lt: before } }, { $set: { followUpLease: null } });
			await this.recoverInterrupted(0).catch((err: Error) => this.logger.error("Recovery at start failed; the timer retries:", err));
			const running = await this.db.idempotency_keys.find({ status: "running" }, { limit: 1000 });
			for (const key of running) {
				await this.settleOrphanedKey(key as unknown as IdempotencyRecord, 0).catch((err: Error) => this.logger.warn(`Idempotency key ${key.id} left for a retry:`, err.message));
			}
		},
	},

	actions: {
		checkout: {
			rest: "POST /orders",
			openapi: {
				success: 201,
				response: "Order",
				responses: {
					200: "The order already placed with this Idempotency-Key and body",
					400: "Idempotency-Key missing or malformed",
					402: "Payment declined: stock released, order cancelled, cart kept",
					409: "Cart empty or not buyable, stock short, the total not the expectedTotal sent, another checkout of the cart in progress, too many orders waiting for payment, the account being erased (ACCOUNT_CLOSED), or the Idempotency-Key is in use or was used with another body",
					503: "A service or the store is unavailable; CHECKOUT_BEING_UNDONE: the checkout failed and is being undone, the key stays held until then",
				},
				headers: { "Idempotency-Key": { required: true, description: "One checkout per key: a retry with the same body gets the first answer" } },
			},
			auth: "required",
			params: {
				$$strict: "remove",
				shippingAddressId: { type: "string", min: 1, max: 100 },
				paymentMethod: {
					type: "object",
					strict: "remove",
					props: { type: { type: "enum", values: ["card"] }, token: { type: "string", min: 1, max: 255 } },
				},
				// The total the customer saw and agreed to pay: a checkout whose total differs (a price changed since) is refused.
				expectedTotal: { type: "number", integer: true, min: 0, optional: true },
				// Its currency (the cart's `currency`): without it, a line whose product moved to another currency is refused.
				expectedCurrency: { type: "string", pattern: /^[A-Za-z]{3}$/, optional: true },
			},
			async handler(this: OrdersThis, ctx: Context<CheckoutParams, ShopMeta>) {
				const key = ctx.meta.idempotencyKey;
				if (!key) throw new BadRequestError("The Idempotency-Key header is required for checkout", "IDEMPOTENCY_KEY_REQUIRED");
				if (!isValidIdempotencyKey(key)) throw invalidIdempotencyKey();
				const fingerprint = requestFingerprint(ctx.params);

				const claim = await this.claimCheckoutKey(ctx, key, fingerprint);
				if (!claim.claimed) return claim.answer;

				try {
					const order = await this.runCheckout(ctx, claim.record.orderId);
					const view = orderView(order);
					await this.db.idempotency_keys.updateOne({ id: claim.record.id }, { $set: { status: "completed", response: view } });
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/orders/${view.id}`;
					return view;
				} catch (err: any) {
					// Taken over by another run while this one was thought gone: that run finishes the order and
					// answers the key; a retry waits for it.
					if (err instanceof SagaTakenOverError) throw new ServiceUnavailableError("The checkout is being finished, retry with the same Idempotency-Key");
					// A business refusal (402, 409, 422) is the answer to this request: replay it. A server error
					// whose saga undid everything leaves nothing behind, so the key is freed for a retry; so do the
					// refusals that pass (PASSING_REFUSALS).
					if (err?.code >= 400 && err?.code < 500 && !PASSING_REFUSALS.has(err?.type)) {
						await this.db.idempotency_keys.updateOne({ id: claim.record.id }, { $set: { status: "failed", error: serializeError(err) } });
					} else if (await this.leftNothingBehind(claim.record.orderId)) {
						await this.db.idempotency_keys.removeOne({ id: claim.record.id });
					} else {
						// Its undoing failed, or could not be recorded (a full disk): money may be held. The key stays
						// held, so a retry waits (409 in progress) rather than charging again, until recovery has
						// undone the order (seconds later) and frees it.
						this.logger.warn(`Checkout of order ${claim.record.orderId} failed and is left to recovery to undo:`, err?.message);
						throw new CheckoutBeingUndoneError(claim.record.orderId);
					}
					throw err;
				}
			},
		},

		list: {
			rest: "GET /orders",
			openapi: { response: { list: "Order" } },
			auth: "required",
			params: { ...pageParams, userId: { type: "string", optional: true }, status: { type: "enum", values: [...ORDER_STATUSES], optional: true } },
			async handler(this: OrdersThis, ctx: Context<{ page?: number; pageSize?: number; userId?: string; status?: OrderStatus }, ShopMeta>) {
				const user = ctx.meta.user!;
				// A customer only ever sees their own orders, whatever userId they send.
				const query: Query = user.role === "admin" ? (ctx.params.userId ? { userId: ctx.params.userId } : {}) : { userId: user.id };
				if (ctx.params.status) query.status = ctx.params.status;
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				// The id breaks ties: orders of one millisecond keep their order from page to page (and across builds).
				const [rows, total] = await this.db.orders.findWithCount(query, { sort: { createdAt: -1, id: -1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map((o) => orderView(o as unknown as Order, user.id)), total, w.page, w.pageSize);
			},
		},

		get: {
			rest: "GET /orders/:id",
			openapi: { response: "Order" },
			auth: "required",
			params: { id: "string" },
			async handler(this: OrdersThis, ctx: Context<{ id: string }, ShopMeta>) {
				return orderView(await this.visibleOrder(ctx, ctx.params.id), ctx.meta.user!.id);
			},
		},

		eventLog: {
			rest: "GET /orders/:id/events",
			// A list, so in the contract's list shape, oldest first.
			openapi: { response: { list: "OrderEvent" } },
			auth: "required",
			params: { ...pageParams, id: "string" },
			async handler(this: OrdersThis, ctx: Context<{ id: string; page?: number; pageSize?: number }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				const legacy = logIsEmbedded(order) ? [] : await this.db.order_events.find({ orderId: order.id }, { sort: { seq: 1 } });
				const full = orderEventLog(order, legacy as unknown as OrderEvent[]);
				const log = ctx.meta.user!.role === "admin" ? full : customerEventLog(full);
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				return toPage(log.slice(w.offset, w.offset + w.limit), log.length, w.page, w.pageSize);
			},
		},

		cancel: {
			rest: "POST /orders/:id/cancel",
			// Cancelling again answers the order as it stands and redoes nothing: a timed-out cancel may be sent again.
			repeatable: true,
			openapi: { response: "Order", responses: { 409: "Already shipped, or checkout still in progress" } },
			auth: "required",
			params: { $$strict: "remove", id: "string", reason: { type: "string", max: 500, optional: true } },
			async handler(this: OrdersThis, ctx: Context<{ id: string; reason?: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				// An interrupted cancel (a stock, promo or refund call failed, or the node died) resumes instead of answering 409;
				// one already done answers as the first did (the client's retry of an answer it lost), changing nothing.
				if (order.status === "cancelled") return order.pendingActions?.length ? orderView((await this.driveFollowUps(ctx, order.id))!) : orderView(order);
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
			openapi: { response: "Order", responses: { 409: "Not allowed by the order state machine" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				status: { type: "enum", values: ["processing", "shipped", "delivered"] },
				// One line as names are (it is shown in email, SMS and push): a bidirectional override made it read reversed.
				trackingNumber: { type: "string", min: 1, max: 100, trim: true, optional: true, ...oneLineRule },
			},
			async handler(this: OrdersThis, ctx: Context<{ id: string; status: OrderStatus; trackingNumber?: string }, ShopMeta>) {
				const { id, status: to, trackingNumber } = ctx.params;
				const order = await this.db.orders.findById(id);
				if (!order) throw new NotFoundError("Order");
				// Stored only with the shipment: another one sent with another status would be silently dropped
				// (the one already stored, sent again with `delivered`, is no change).
				if (trackingNumber !== undefined && to !== "shipped" && trackingNumber !== order.trackingNumber) {
					throw invalidField("trackingNumber", "trackingNumber is set with status shipped only", "forbidden");
				}
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
			openapi: {
				response: "Refund",
				responses: { 403: "Requires role: admin", 409: "Nothing left to refund, or the Idempotency-Key was used for another refund" },
				headers: { "Idempotency-Key": { description: "A retry with the same key refunds once" } },
			},
			// Checked in the handler rather than by `roles`, so another customer's order is a 404 first.
			auth: "required",
			params: { $$strict: "remove", id: "string", amount: { type: "number", integer: true, positive: true, optional: true }, reason: { type: "string", min: 1, max: 500 } },
			async handler(this: OrdersThis, ctx: Context<{ id: string; amount?: number; reason: string }, ShopMeta>) {
				const order = await this.visibleOrder(ctx, ctx.params.id);
				if (ctx.meta.user!.role !== "admin") throw new ForbiddenError("Requires role: admin");
				// A retried request with the same Idempotency-Key refunds once; two different refunds of the same amount are both allowed.
				const key = ctx.meta.idempotencyKey;
				if (key !== undefined && !isValidIdempotencyKey(key)) throw invalidIdempotencyKey();
				const refundKey = adminRefundKey(order.id, key ?? crypto.randomUUID());
				const amount = ctx.params.amount ?? order.paidAmount - order.refundedAmount;
				const refusal = adminRefundRefusal(order, amount);
				if (refusal) {
					// A retry whose refund went through gets that refund, though the order no longer passes the checks.
					const earlier = key === undefined ? null : await ctx.call<any, any>("payments.refund", { orderId: order.id, amount: ctx.params.amount, reason: ctx.params.reason, refundKey, existingOnly: true });
					if (!earlier) throw refusal;
					await this.recordRefund(order.id, earlier, ctx.params.reason);
					return earlier;
				}
				// Money of an order never confirmed (paid after it was cancelled) was not a sale: see refundOwed.
				const refund = await ctx.call<any, any>("payments.refund", { orderId: order.id, amount, reason: ctx.params.reason, refundKey, ...(order.confirmedAt ? {} : { sale: false }) });
				await this.recordRefund(order.id, refund, ctx.params.reason);
				return refund;
			},
		},

		/** The user's orders not yet delivered or cancelled (an account is deleted only without any). */
		openOrdersOf: {
			visibility: "public",
			params: { userId: "string" },
			async handler(this: OrdersThis, ctx: Context<{ userId: string }>) {
				const open = await this.db.orders.find({ userId: ctx.params.userId, status: { $nin: ["delivered", "cancelled"] } }, { sort: { createdAt: 1 }, limit: 20, fields: ["id", "number", "status", "saga"] });
				// checkingOut: its checkout still runs, and may yet cancel it.
				return open.map((o) => ({ id: o.id, number: o.number, status: o.status, checkingOut: (o.saga as { state?: string } | undefined)?.state === "running" }));
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

		/** The order if the caller may see it: their own, or any for an admin. Otherwise 404, never 403. */
		async visibleOrder(ctx: Context<unknown, ShopMeta>, id: string): Promise<Order> {
			const order = await this.db.orders.findById(id);
			const user = ctx.meta.user!;
			if (!order || (order.userId !== user.id && user.role !== "admin")) throw new NotFoundError("Order");
			return order as unknown as Order;
		},

		/**
		 * This request's hold on its key, or the answer an earlier request with the key already has.
		 * An earlier request that failed and freed the key while this one waited for it (the gateway
		 * re-sends a call that timed out while the first still runs) is what a retry is for: this
		 * request claims the key again and runs the checkout, rather than answering "retry".
		 */
		/** Whether a failed checkout's order was never made, or its saga undid everything and recorded so. */
		async leftNothingBehind(orderId: string) {
			const order = (await this.db.orders.findById(orderId)) as unknown as Order | null;
			return !order || order.saga?.state === "compensated";
		},

		async claimCheckoutKey(ctx: Context<CheckoutParams, ShopMeta>, key: string, fingerprint: string) {
			const store = this.db.idempotency_keys as unknown as IdempotencyStore;
			for (let round = 0; round < 2; round++) {
				const claim = await claimIdempotencyKey(store, { userId: ctx.meta.user!.id, key, fingerprint, orderId: newId, holder: { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID } });
				if (!claim) break;
				if (claim.claimed) return { claimed: true as const, record: claim.record };
				const answer = await this.replayCheckout(ctx, claim.record, fingerprint);
				if (answer !== KEY_FREED) return { claimed: false as const, answer };
			}
			throw new ServiceUnavailableError("Could not claim the Idempotency-Key, retry");
		},

		/** The answer to a repeated key: the first request's order as it is now (200), its error, 409 on another body, or KEY_FREED. */
		async replayCheckout(ctx: Context<CheckoutParams, ShopMeta>, first: IdempotencyRecord, fingerprint: string) {
			if (first.fingerprint !== fingerprint) throw new ConflictError("This Idempotency-Key was already used with a different request", "IDEMPOTENCY_KEY_REUSED");
			// The request holding the key may have died with its node: its order tells (see orphanedKeyAction).
			let record: IdempotencyRecord | null = first.status === "running" ? await this.settleOrphanedKey(first, this.settings.orphanedKeyMs) : first;
			if (record?.status === "running") record = await awaitIdempotentOutcome(this.db.idempotency_keys as unknown as IdempotencyStore, record, this.settings.idempotencyWaitMs);
			if (!record) return KEY_FREED;
			if (record.status === "running") throw new ConflictError("A request with this Idempotency-Key is still in progress", "IDEMPOTENCY_KEY_IN_PROGRESS");
			if (record.status === "failed") throw replayError(record.error!);
			ctx.meta.$statusCode = 200;
			// As it stands now: a client that lost the first answer of a 3-D Secure checkout sees it paid or cancelled since.
			const order = record.orderId ? ((await this.db.orders.findById(record.orderId)) as unknown as Order | null) : null;
			return order ? orderView(order) : record.response;
		},

		/** Completes or frees a key left running by a request that died; returns the key as it is now (null: freed). */
		async settleOrphanedKey(record: IdempotencyRecord, staleMs: number) {
			const order = (await this.db.orders.findById(record.orderId)) as unknown as Order | null;
			// The run whose request held it is over (its node restarted, as after a crash in a cluster): no
			// request is on its way any more, so the retry need not wait out the stale window.
			const holderOver = runnerState(record.holder, brokerRunView(this.broker, this.recoveryStartedAt)) === "over";
			const action = orphanedKeyAction(record, order?.saga?.state ?? null, new Date(), staleMs, holderOver);
			if (action === "complete") {
				const completed = await this.db.idempotency_keys.updateOne({ id: record.id, status: "running" }, { $set: { status: "completed", response: orderView(order!) } });
				return (completed ?? (await this.db.idempotency_keys.findById(record.id))) as unknown as IdempotencyRecord | null;
			}
			if (action === "release") {
				await this.db.idempotency_keys.removeOne({ id: record.id, status: "running" });
				this.logger.warn(`Idempotency key of order ${record.orderId} freed: its request died before answering`);
				// It may have died holding the customer's cart, before its order existed (nothing to recover): the
				// retry must not wait for the claim's lease. Failing that, the lease ends it.
				await this.broker
					.call("cart.releaseCheckout", { userId: record.userId, orderId: record.orderId })
					.catch((err: Error) => this.logger.warn(`Cart claim of order ${record.orderId} left to its lease:`, err.message));
				return null;
			}
			return record;
		},

		/**
		 * Calls on behalf of the checkout's request, or as the service itself when recovering. Undoing, it
		 * is not held to the request's deadline (Moleculer skips a call made after it): a checkout that ran
		 * out of time must still give back the stock, the promo use and the cart it took. `pastDeadline`
		 * does the same for a forward step that must not be skipped (letting the cart go after the sale).
		 */
		callFrom(c: Checkout, action: string, params: Record<string, unknown>, opts: { pastDeadline?: boolean } = {}) {
			if (!c.ctx) return this.broker.call(action, params);
			return c.outlivesDeadline || opts.pastDeadline ? this.broker.call(action, params, { parentCtx: c.ctx }) : c.ctx.call(action, params);
		},
	} satisfies OrderMethods & ThisType<OrdersThis>,
};

export default OrdersService;
