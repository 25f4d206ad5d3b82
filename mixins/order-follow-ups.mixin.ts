/**
 * What an order owes after a change, split out of services/orders.service.ts for size; only that
 * service uses it. A change records its follow-ups on the order (`pendingActions`, in the same
 * update: see changeOrder) and this mixin drives them to completion (commit or release stock,
 * return the promo use, refund, announce), whoever finds them: the caller, a replayed payment
 * event, a retried cancel, the recovery timer. The invariant is spelled out next to
 * FOLLOW_UPS_AFTER in lib/order-state.ts.
 *
 * Payment news lands here too (`onPaymentEvent`, the handler the host gives OutboxConsumerMixin),
 * live or caught up from the payments outbox: each event is one conditional change of the order
 * with the follow-ups it records, so an event applied twice changes nothing and a replay finishes
 * what an interrupted first delivery left pending.
 *
 * The host declares the orders collections (DbMixin), OutboxMixin, `changeOrder` and `callFrom`
 * (OrderHostMethods), and CheckoutSagaMixin's `recoverCheckout`. List this mixin before DbMixin and
 * OutboxMixin: Moleculer starts mixins in reverse list order and stops them in list order, so the
 * recovery timer starts after the collections open and stops before they close.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collections } from "./db.mixin";
import type { Entity } from "./collection";
import type { OutboxThis } from "./outbox.mixin";
import { readConfig } from "../lib/config";
import { backoffDelay } from "../lib/retry-backoff";
import { brokerRunView, checkoutRecoveryDue, followUpsDue, type RecoveryView, type SagaRunner } from "../lib/checkout-recovery";
import type { Checkout, CheckoutSagaMethods, CheckoutSagaVars, OrderHostMethods } from "./checkout-saga.mixin";
import {
	announcementEvent,
	announcementOf,
	followUpsClaimable,
	FOLLOW_UPS,
	FOLLOW_UPS_AFTER,
	paymentStatusAfterRefund,
	refundOwed,
	type Announcement,
	PAYMENT_CANCELLED_EVENT,
	type FollowUp,
	type Order,
	type OrderEventEntry,
} from "../lib/order-state";

/** Payment statuses (payments service) of a payment that went through. */
const PAID_STATUSES = new Set(["succeeded", "partially_refunded", "refunded"]);
/** A refund follow-up that finds nothing left to refund at payments is done, not failed. */
const NOTHING_TO_REFUND = new Set(["ALREADY_REFUNDED", "NOT_REFUNDABLE"]);
/** Rounds of one drive: follow-ups recorded while it held the lease are taken in the next round. */
const FOLLOW_UP_ROUNDS = 5;

export interface OrderFollowUpSettings {
	/** A checkout "running" (or follow-ups pending) for longer than this was interrupted and gets recovered. */
	staleCheckoutMs: number;
	/** How long one caller may drive an order's follow-ups before another takes over (it died). */
	followUpLeaseMs: number;
	/** An order still waiting for its payment this long after its checkout is cancelled, its stock freed (UNPAID_ORDER_TTL_MINUTES when null). */
	unpaidOrderTtlMs: number | null;
	/** How often each node looks for checkouts whose run is over or whose undoing failed. */
	checkoutRecoveryScanMs: number;
	/** A checkout whose undoing failed (a service it needed was down) is tried again after this long. */
	compensationRetryMs: number;
	/** A checkout whose runner's node the registry has lost is taken once untouched this long (see lib/checkout-recovery.ts). */
	lostRunnerMs: number;
}

type OrderAnnouncement = { event: string; payload: Record<string, unknown> & { orderId: string } };

export interface OrderFollowUpMethods {
	onPaymentEvent(event: string, payload: Record<string, any>, ctx: Context | null): Promise<void>;
	paymentSucceeded(ctx: Context | null, payment: { orderId: string; paymentId: string; amount: number }): Promise<void>;
	paymentFailed(ctx: Context | null, payment: { orderId: string; reason?: string }): Promise<void>;
	recordPaymentSucceeded(orderId: string, paymentId: string, amount: number): Promise<Order | null>;
	recordPaymentFailed(orderId: string, reason: string | null): Promise<Order | null>;
	recordPaymentCancelled(orderId: string): Promise<Order | null>;
	tryFollowUps(ctx: Context | null, orderId: string): Promise<void>;
	driveFollowUps(ctx: Context | null, orderId: string): Promise<Order | null>;
	runFollowUp(ctx: Context | null, order: Order, followUp: FollowUp, lease: Date): Promise<Order | null>;
	announce(ctx: Context | null, order: Order, followUp: FollowUp, what: Announcement, lease: Date): Promise<Order | null>;
	publishOnce(ctx: Context | null, announcements: OrderAnnouncement[], since: Date | null): Promise<void>;
	refundRest(c: Checkout, reason: string, refundKey: string, sale: boolean): Promise<void>;
	recordRefund(orderId: string, refund: { id: string; amount: number; status?: string }, reason: string | null): Promise<void>;
	recordRefundFailed(orderId: string, refund: { id: string; amount: number }, reason: string | null): Promise<void>;
	settlePaymentStatus(orderId: string, changed: Order | null): Promise<void>;
	recoverInterrupted(olderThanMs: number): Promise<void>;
	recoverInterruptedCheckouts(): Promise<void>;
	driveAbandonedFollowUps(): Promise<void>;
	recoverOrder(found: Order): Promise<void>;
	expireUnpaid(olderThanMs: number): Promise<number>;
	adoptLegacyCancellation(orderId: string): Promise<Entity | null>;
}

export interface OrderFollowUpVars extends OrderHostMethods, Pick<CheckoutSagaMethods, "recoverCheckout">, Pick<CheckoutSagaVars, "checkoutsHere">, Pick<OutboxThis, "publishAll" | "published"> {
	db: Collections;
	recoveryTimer: NodeJS.Timeout;
	unpaidTimer: NodeJS.Timeout;
	checkoutScanTimer: NodeJS.Timeout;
	/** When this service started: the registry has heard from every live node a heartbeat timeout later. */
	recoveryStartedAt: number;
	/** Orders whose abandoned follow-ups failed when this node drove them: when to try again. */
	followUpBackoff?: Map<string, { tries: number; nextAt: number }>;
	/** Orders this run is recovering now (recoverOrder): their sagas are driven here meanwhile. */
	recoveringHere?: Set<string>;
	/** Whether orders cancelled before follow-ups existed may be left (unknown until the first scan). */
	legacyCancellationsLeft?: boolean;
}
/** The order's record of a refund in `field` (refunds, failedRefunds), by refund id: no dot or dollar in a field name. */
const refundKeyOnOrder = (field: "refunds" | "failedRefunds", refundId: string) => `${field}.${String(refundId).replace(/[.$]/g, "_")}`;

type OrderFollowUpThis = Service<OrderFollowUpSettings> & OrderFollowUpMethods & OrderFollowUpVars;

const orderFollowUpsSchema: Partial<ServiceSchema<OrderFollowUpSettings, OrderFollowUpMethods, OrderFollowUpVars>> = {
	settings: { staleCheckoutMs: 15 * 60_000, followUpLeaseMs: 2 * 60_000, unpaidOrderTtlMs: null, checkoutRecoveryScanMs: 5000, compensationRetryMs: 5000, lostRunnerMs: 2 * 60_000 },

	methods: {
		/** Payment news, live (with its ctx) or caught up from the payments outbox (ctx null). */
		async onPaymentEvent(event: string, payload: Record<string, any>, ctx: Context | null) {
			if (typeof payload?.orderId !== "string") return;
			// The checkout's own charge, announced while its saga runs here: the saga records it (and one
			// that ends without doing so looks at the payment), so there is nothing for this copy to do.
			if (event !== "payment.refunded" && this.checkoutsHere.has(payload.orderId)) return;
			if (event === "payment.succeeded") await this.paymentSucceeded(ctx, payload as { orderId: string; paymentId: string; amount: number });
			else if (event === "payment.failed") await this.paymentFailed(ctx, payload as { orderId: string; reason?: string });
			// Refunds made outside this service (e.g. in Stripe's dashboard) still show on the order.
			else if (event === "payment.refunded") await this.recordRefund(payload.orderId, { id: payload.refundId, amount: payload.amount }, typeof payload.reason === "string" ? payload.reason : null);
			else if (event === "payment.refund_failed") await this.recordRefundFailed(payload.orderId, { id: payload.refundId, amount: payload.amount }, typeof payload.reason === "string" ? payload.reason : null);
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
			// Paid after the order was cancelled (a late 3-D Secure, a charge that timed out, or one payments had
			// recorded failed as never charged): recorded once (nothing paid before), and given back. The refund
			// of a payment recorded failed is payments' own, and its news may have come first.
			const order = (await this.db.orders.findById(orderId)) as unknown as Order | null;
			if (!order || order.status !== "cancelled" || order.paidAmount > 0 || order.saga?.state === "running") return null;
			const paymentStatus = order.refundedAmount > 0 ? paymentStatusAfterRefund(amount, order.refundedAmount) : "succeeded";
			return this.changeOrder(orderId, {
				when: { status: "cancelled", paidAmount: 0, refundedAmount: order.refundedAmount, "saga.state": { $ne: "running" } },
				set: { paymentStatus, paidAmount: amount },
				event: { type: "payment_succeeded", data: { paymentId, amount, late: true } },
				followUps: FOLLOW_UPS_AFTER.paidLate,
			});
		},

		/**
		 * The failure and the cancel are one update: there is no moment with a failed payment on a live
		 * order. An order cancelled meanwhile (its payment stopped, or never completed) only records it.
		 */
		async recordPaymentFailed(orderId: string, reason: string | null): Promise<Order | null> {
			const cancelled = await this.changeOrder(orderId, {
				when: { status: "pending", paymentStatus: "pending", "saga.state": "completed" },
				set: { paymentStatus: "failed", status: "cancelled", cancelReason: "payment_failed", cancelledAt: new Date() },
				event: [
					{ type: "payment_failed", data: { reason } },
					{ type: "cancelled", data: { reason: "payment_failed" } },
				],
				followUps: FOLLOW_UPS_AFTER.paymentNotCompleted,
			});
			if (cancelled) return cancelled;
			return this.changeOrder(orderId, {
				when: { status: "cancelled", paymentStatus: "pending", "saga.state": { $ne: "running" } },
				set: { paymentStatus: "failed" },
				event: { type: "payment_failed", data: { reason } },
			});
		},

		/** The order's payment was stopped with it, or recorded never charged (payments.cancel): none was taken, and none can be. */
		recordPaymentCancelled(orderId: string): Promise<Order | null> {
			return this.changeOrder(orderId, {
				when: { status: "cancelled", paymentStatus: "pending", "saga.state": { $ne: "running" } },
				set: { paymentStatus: "cancelled" },
				event: PAYMENT_CANCELLED_EVENT,
			});
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
				// The run is recorded with the lease: should this node die holding it, the next scan knows it is over.
				const runner: SagaRunner = { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID };
				let order = (await this.db.orders.updateOne({ id: orderId, ...followUpsClaimable(now) }, { $set: { followUpLease: lease, followUpRunner: runner } })) as unknown as Order | null;
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
			const c: Checkout = { ctx, orderId: order.id, userId: order.userId, order, outlivesDeadline: true };
			const done = (event?: OrderEventEntry) => this.changeOrder(order.id, { when: { followUpLease: lease, pendingActions: followUp }, done: followUp, event });
			const announcement = announcementOf(followUp);
			if (announcement) return this.announce(ctx, order, followUp, announcement, lease);
			switch (followUp) {
				case "settlePayment":
				case "cancelPayment": {
					// Only a payment still waiting can be stopped; one settled already is the refund's business.
					if (followUp === "cancelPayment" && order.paymentStatus !== "pending") return done();
					// An undone checkout's charge may have gone through unrecorded, or be on its way still: payments stops what
					// it has, and records none as never charged, so a late charge is refused. A payment awaited is only looked at.
					const undone = followUp === "settlePayment" && order.status === "cancelled" && order.paymentStatus === "pending";
					const payment = undone
						? await this.callFrom(c, "payments.cancel", { orderId: order.id, ifNone: { userId: order.userId, amount: order.total, currency: order.currency } })
						: await this.callFrom(c, followUp === "settlePayment" ? "payments.getByOrder" : "payments.cancel", { orderId: order.id });
					// The follow-ups of what the payment's state says are taken in the next round of the drive.
					if (payment && PAID_STATUSES.has(payment.status)) await this.recordPaymentSucceeded(order.id, payment.id, payment.amount);
					else if (payment?.voided) await this.recordPaymentCancelled(order.id);
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
							await this.refundRest(c, owed.reason, owed.refundKey, owed.sale);
						} catch (err: any) {
							// Refunded meanwhile by other means (an admin, the provider's dashboard): nothing is owed any more.
							if (!NOTHING_TO_REFUND.has(err?.type)) throw err;
							this.logger.warn(`Refund ${owed.refundKey} of order ${order.id} not needed: ${err.message}`);
						}
					}
					return done();
				}
				case "restoreCart": {
					// Not once the customer has checked out again: they have moved on, and the lines would come back unbought.
					const later = await this.db.orders.count({ userId: order.userId, createdAt: { $gt: new Date(order.createdAt) } });
					if (!later) {
						// At the prices the order was placed at: one changed since is flagged in the cart, as for any line.
						const items = order.items.map((l) => ({ variantId: l.variantId, quantity: l.quantity, unitPrice: l.unitPrice }));
						await this.callFrom(c, "cart.restore", { userId: order.userId, items, currency: order.currency, ...(order.promoCode ? { promoCode: order.promoCode } : {}) });
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
			await this.publishOnce(ctx, [{ event, payload: payload as OrderAnnouncement["payload"] }], firstAttempt ? new Date(firstAttempt) : null);
			return this.changeOrder(order.id, { when: held, done: followUp });
		},

		/** Publishes the order's events (together), each unless `since` is given and the outbox holds it from then on. */
		async publishOnce(ctx: Context | null, announcements: OrderAnnouncement[], since: Date | null) {
			const missing = [];
			for (const a of announcements) {
				if (since && (await this.published(a.event, { orderId: a.payload.orderId }, since))) continue;
				missing.push(a);
			}
			await this.publishAll(ctx, missing);
		},

		/** Refunds whatever is left of the payment; the key makes a repeated call refund once. `sale`: see refundOwed. */
		async refundRest(c: Checkout, reason: string, refundKey: string, sale: boolean) {
			const refund = await this.callFrom(c, "payments.refund", { orderId: c.orderId, reason, refundKey, ...(sale ? {} : { sale: false }) });
			// A refund the provider refused cannot be retried under the same key: it needs a person.
			if (refund.status === "failed") this.logger.error(`Refund ${refundKey} of order ${c.orderId} was refused by the provider; refund it by hand`);
			await this.recordRefund(c.orderId, refund, reason);
		},

		/** Counts a refund on the order once (by refund id), and lets the payment status follow. */
		async recordRefund(orderId: string, refund: { id: string; amount: number; status?: string }, reason: string | null) {
			if (refund.status === "failed") return;
			const key = refundKeyOnOrder("refunds", refund.id);
			const counted = await this.changeOrder(orderId, {
				when: { [key]: { $exists: false } },
				set: { [key]: refund.amount },
				inc: { refundedAmount: refund.amount },
				event: { type: "refunded", data: { refundId: refund.id, amount: refund.amount, reason } },
			});
			await this.settlePaymentStatus(orderId, counted);
		},

		/**
		 * A refund counted on the order that the provider failed later: the money stayed with the shop,
		 * so the order counts it off (once: by refund id), and an admin can refund again. A cancelled
		 * order shows its payment `succeeded` again: paid, not given back.
		 */
		async recordRefundFailed(orderId: string, refund: { id: string; amount: number }, reason: string | null) {
			const key = refundKeyOnOrder("refunds", refund.id);
			const failedKey = refundKeyOnOrder("failedRefunds", refund.id);
			const uncounted = await this.changeOrder(orderId, {
				when: { [key]: refund.amount, [failedKey]: { $exists: false } },
				set: { [failedKey]: refund.amount },
				inc: { refundedAmount: -refund.amount },
				event: { type: "refund_failed", data: { refundId: refund.id, amount: refund.amount, reason } },
			});
			await this.settlePaymentStatus(orderId, uncounted);
		},

		/** The payment status the order's refunded amount gives; `changed`: the order as a change just left it. */
		async settlePaymentStatus(orderId: string, changed: Order | null) {
			// Changed before (a replay): the status is set again, in case the node died between the two writes.
			const current = changed ?? ((await this.db.orders.findById(orderId)) as unknown as Order | null);
			if (!current || (current.refundedAmount <= 0 && !current.failedRefunds)) return;
			// Guarded by the amount just read, so a slower concurrent refund cannot set an older status.
			await this.db.orders.updateOne(
				{ id: orderId, refundedAmount: current.refundedAmount },
				{ $set: { paymentStatus: paymentStatusAfterRefund(current.paidAmount, current.refundedAmount) } },
			);
		},

		/**
		 * Finishes what a crash (or a failed call) interrupted: checkouts left "running" or with a
		 * compensation pending, and orders with follow-ups still pending. Each kind is read through its
		 * own index: as one `$or`, NeDB read every order of the store, every 5 minutes on every node.
		 */
		async recoverInterrupted(olderThanMs: number) {
			const cutoff = new Date(Date.now() - olderThanMs);
			const stuck = [
				...(await this.db.orders.find({ "saga.state": { $in: ["running", "compensation_failed"] }, updatedAt: { $lt: cutoff } }, { limit: 100 })),
				...(await this.db.orders.find({ pendingActions: { $in: [...FOLLOW_UPS] }, updatedAt: { $lt: cutoff } }, { limit: 100 })),
			] as unknown as Order[];
			// Orders cancelled before follow-ups existed have no index: looked for at the first scan after a
			// start, and again only while some are left (whatever their age, so one whose adoption failed is kept).
			if (this.legacyCancellationsLeft !== false) {
				const legacy = (await this.db.orders.find({ cancellation: "pending" }, { limit: 100 })) as unknown as Order[];
				this.legacyCancellationsLeft = legacy.length > 0;
				stuck.push(...legacy.filter((o) => o.updatedAt < cutoff));
			}
			// An order may be of two kinds: recovered once.
			for (const found of new Map(stuck.map((o) => [o.id, o])).values()) await this.recoverOrder(found);
		},

		/**
		 * Checkouts whose run is known to be over (its node died or restarted) or whose undoing failed,
		 * finished now rather than after the stale window: their stock is held and their buyer's retry
		 * waits until then. Reads only the index of running and failed sagas, so it runs every few seconds.
		 */
		async recoverInterruptedCheckouts() {
			// Oldest first: the checkouts in flight now, which are most of them, come last.
			const found = await this.db.orders.find({ "saga.state": { $in: ["running", "compensation_failed"] } }, { sort: { updatedAt: 1 }, limit: 100 });
			if (!found.length) return;
			const view: RecoveryView = {
				...brokerRunView(this.broker, this.recoveryStartedAt),
				staleMs: this.settings.staleCheckoutMs,
				lostRunnerMs: this.settings.lostRunnerMs,
				compensationRetryMs: this.settings.compensationRetryMs,
				drivenHere: (orderId) => this.checkoutsHere.has(orderId) || !!this.recoveringHere?.has(orderId),
			};
			const now = new Date();
			for (const order of found as unknown as Order[]) {
				if (!this.checkoutsHere.has(order.id) && checkoutRecoveryDue(order, now, view)) await this.recoverOrder(order);
			}
		},

		/**
		 * Follow-ups nobody is driving (a cancel's refund whose request failed while a service was down, or
		 * whose node died holding them), driven now rather than after the stale window: the customer was
		 * told "cancelled" and waits for the money. Reads only the index of orders owing follow-ups.
		 */
		async driveAbandonedFollowUps() {
			const found = (await this.db.orders.find({ pendingActions: { $in: [...FOLLOW_UPS] } }, { sort: { updatedAt: 1 }, limit: 100 })) as unknown as Order[];
			if (!found.length) return;
			const view = { ...brokerRunView(this.broker, this.recoveryStartedAt), compensationRetryMs: this.settings.compensationRetryMs };
			const now = new Date();
			// Tries that failed back off (5 s, 10 s, ... up to 5 min), so a refund the provider keeps refusing is not asked every 5 s.
			const backoff = (this.followUpBackoff ??= new Map());
			for (const id of backoff.keys()) if (!found.some((o) => o.id === id)) backoff.delete(id);
			for (const order of found) {
				if (!followUpsDue(order, now, view) || (backoff.get(order.id)?.nextAt ?? 0) > now.getTime()) continue;
				// A dead run's lease: let go of it (only if it is still that one), then drive as anyone would.
				if (order.followUpLease && new Date(order.followUpLease) > now) {
					const freed = await this.db.orders.updateOne({ id: order.id, followUpLease: order.followUpLease }, { $set: { followUpLease: null } });
					if (!freed) continue;
				}
				try {
					await this.driveFollowUps(null, order.id);
					backoff.delete(order.id);
				} catch (err) {
					const tries = (backoff.get(order.id)?.tries ?? 0) + 1;
					backoff.set(order.id, { tries, nextAt: now.getTime() + backoffDelay(tries, { baseMs: 2 * this.settings.compensationRetryMs, factor: 2, maxMs: 5 * 60_000, jitter: 0 }) });
					this.logger.warn(`Follow-ups of order ${order.id} failed (try ${tries}), tried again later:`, (err as Error).message);
				}
			}
		},

		/** Recovers one order found interrupted. */
		async recoverOrder(found: Order) {
			// Only one node takes each order: the claim is a compare-and-set on updatedAt. A checkout's saga
			// is this run's from now on: a runner that comes back finds it taken and stops (SagaTakenOverError).
			const runner: SagaRunner = { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID };
			const sagaOpen = found.saga?.state === "running" || found.saga?.state === "compensation_failed";
			const claim: Record<string, unknown> = { updatedAt: new Date(), ...(sagaOpen ? { "saga.runner": runner } : {}) };
			const order = (await this.db.orders.updateOne({ id: found.id, updatedAt: found.updatedAt }, { $set: claim })) as unknown as Order | null;
			if (!order) return;
			// Its saga is driven here while this runs: the scan leaves it alone, as it does a checkout's.
			const recovering = (this.recoveringHere ??= new Set());
			recovering.add(order.id);
			try {
				if (order.cancellation === "pending") await this.adoptLegacyCancellation(order.id);
				if (order.saga?.state === "running" || order.saga?.state === "compensation_failed") await this.recoverCheckout(order);
				await this.driveFollowUps(null, order.id);
			} catch (err) {
				this.logger.error(`Recovery of order ${order.id} failed, will retry:`, err);
			} finally {
				recovering.delete(order.id);
			}
		},

		/**
		 * Orders still waiting for their payment (3-D Secure never completed, a payment never settled)
		 * `olderThanMs` after their checkout are cancelled like any cancel: stock and promo use freed,
		 * the customer told. A payment that settles later is refunded (paidLate). Returns how many.
		 */
		async expireUnpaid(olderThanMs: number) {
			const unpaid = await this.db.orders.find(
				{ status: "pending", paymentStatus: "pending", "saga.state": "completed", createdAt: { $lt: new Date(Date.now() - olderThanMs) } },
				{ limit: 100 },
			);
			let expired = 0;
			for (const found of unpaid) {
				// The same condition as the search: a payment recorded meanwhile keeps the order.
				const cancelled = await this.changeOrder(found.id, {
					when: { status: "pending", paymentStatus: "pending" },
					set: { status: "cancelled", cancelReason: "payment_timeout", cancelledAt: new Date() },
					event: { type: "cancelled", data: { reason: "payment_timeout", by: "shop" } },
					followUps: FOLLOW_UPS_AFTER.paymentNotCompleted,
				});
				if (!cancelled) continue;
				expired++;
				this.logger.info(`Order ${found.id} cancelled: its payment did not complete within ${Math.round(olderThanMs / 60_000)} min`);
				await this.driveFollowUps(null, found.id).catch((err: Error) => this.logger.warn(`Follow-ups of expired order ${found.id} left to recovery:`, err.message));
			}
			return expired;
		},

		/** Orders cancelled before follow-ups existed: their release, refund and announcement become follow-ups. */
		adoptLegacyCancellation(orderId: string) {
			return this.db.orders.updateOne(
				{ id: orderId, cancellation: "pending" },
				{ $set: { cancellation: null }, $addToSet: { pendingActions: { $each: [...FOLLOW_UPS_AFTER.cancelled] } } },
			);
		},
	} satisfies OrderFollowUpMethods & ThisType<OrderFollowUpThis>,

	started() {
		// Far beyond any request timeout, so a checkout still running on another node is never taken.
		const staleMs = this.settings.staleCheckoutMs;
		const unpaidTtlMs = this.settings.unpaidOrderTtlMs ?? readConfig().unpaidOrderTtlMinutes * 60_000;
		this.recoveryTimer = setInterval(() => {
			this.recoverInterrupted(staleMs).catch((err: Error) => this.logger.error("Order recovery failed:", err));
		}, Math.min(staleMs, 5 * 60_000));
		this.recoveryTimer.unref();
		// Every minute (a cheap read of the pending orders): an unpaid order holds its stock for the TTL, not up to five minutes more.
		this.unpaidTimer = setInterval(() => {
			this.expireUnpaid(unpaidTtlMs).catch((err: Error) => this.logger.error("Expiring unpaid orders failed:", err));
		}, Math.min(unpaidTtlMs, 60_000));
		this.unpaidTimer.unref();
		this.recoveryStartedAt = Date.now();
		let scanning = false;
		this.checkoutScanTimer = setInterval(() => {
			// One scan at a time: recovering while a service is down can outlast the interval.
			if (scanning) return;
			scanning = true;
			this.recoverInterruptedCheckouts()
				.then(() => this.driveAbandonedFollowUps())
				.catch((err: Error) => this.logger.error("Checkout recovery failed:", err))
				.finally(() => (scanning = false));
		}, this.settings.checkoutRecoveryScanMs);
		this.checkoutScanTimer.unref();
	},

	stopped() {
		clearInterval(this.recoveryTimer);
		clearInterval(this.unpaidTimer);
		clearInterval(this.checkoutScanTimer);
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const OrderFollowUpsMixin: Partial<ServiceSchema<any, any, any, any>> = orderFollowUpsSchema;
