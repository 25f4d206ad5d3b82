/**
 * The orders service's checkout saga, split out of services/orders.service.ts for size; only that
 * service uses it. `checkoutSteps()` reads as the purchase's story: claim and snapshot the cart →
 * load the address → create the order pending → reserve stock → consume the promo → charge →
 * confirm → commit stock → clear the cart (and its claim) → publish. A failure undoes the earlier
 * steps in reverse (release stock, give the promo back, refund, cancel the order with the reason,
 * let the cart go). The saga's journal lives on the order (`sagaLog`), so compensating again never
 * refunds or releases twice; after a crash, `recoverCheckout` rolls an interrupted checkout forward
 * or back.
 *
 * The host declares the orders collections (DbMixin), `changeOrder` and `callFrom`
 * (OrderHostMethods), and OrderFollowUpsMixin's `refundRest`, `publishOnce` and `tryFollowUps`.
 * Its only hook is `created`, which builds the saga; its place in the mixin list does not matter.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type { Collections } from "./db.mixin";
import type { Entity } from "./collection";
import type { ShopMeta } from "./types";
import type { OrderFollowUpMethods } from "./order-follow-ups.mixin";
import type { OutboxThis } from "./outbox.mixin";
import { ConflictError, NotFoundError, ServiceUnavailableError, invalidField, mayHaveTakenEffect } from "../lib/errors";
import { CarriedSagaLog, Saga, type CompensationFailure, type SagaStep } from "../lib/saga";
import { SagaTakenOverError } from "../lib/checkout-recovery";
import {
	cancelReasonOf,
	checkoutDurationMs,
	createdEvent,
	eventPayload,
	FOLLOW_UPS_AFTER,
	orderLinesOf,
	orderView,
	OrderStateMachine,
	PAYMENT_CANCELLED_EVENT,
	sagaEndUpdate,
	type Order,
	type OrderChange,
	type OrderEventEntry,
} from "../lib/order-state";
import { readConfig, shippingRatesOf } from "../lib/config";
import { computeCheckoutTotals, rateFor, type ShippingRates } from "../lib/checkout-totals";
import { formatOrderNumber, orderNumberDay } from "../lib/order-number";

/**
 * Cart problems (cart.snapshot) that stop a checkout. A code that no longer applies (used up
 * meanwhile, expired, below its minimum) would otherwise be dropped and the customer charged more
 * than the total they saw. A changed price is simply the price now: the cart shows it, and a client
 * that sends the total it showed (expectedTotal) is refused another one (see createOrder).
 */
const BLOCKING_CART_PROBLEMS = new Set(["archived", "currency_mismatch", "promo"]);
/** Orders one customer may have waiting for their payment (3-D Secure) at once; each holds stock until it expires. */
const MAX_UNPAID_ORDERS = 3;
/** products.reserve refusals that say the reservation was cut short (see mixins/inventory.mixin.ts), not that stock is short. */
const INTERRUPTED_RESERVATION = new Set(["RESERVATION_RELEASED", "RESERVATION_IN_PROGRESS"]);

export interface CheckoutParams {
	shippingAddressId: string;
	paymentMethod: { type: "card"; token: string };
	/** The total the customer saw: the checkout is refused (409 TOTAL_CHANGED) when it differs. */
	expectedTotal?: number;
	/** The currency of that total (the cart's `currency`): refused when another. */
	expectedCurrency?: string;
}

/** What the checkout steps share. `ctx` is null when compensating outside a request (recovery). */
export interface Checkout {
	ctx: Context<any, ShopMeta> | null;
	orderId: string;
	userId: string;
	params?: CheckoutParams;
	cart?: { version?: unknown; items: any[]; discount?: number; currency: string; promoCode?: string | null; problems?: any[] };
	address?: Record<string, unknown>;
	order?: Order;
	/** The provider has not settled the payment yet: the webhook (payment.succeeded) confirms later. */
	awaitingPayment?: boolean;
	/** payments.charge was called and what it did is not on the order yet. */
	chargeUnsettled?: boolean;
	/**
	 * This run knows there is no payment for the order, nor can be: it never asked for the charge, or the
	 * provider refused it. Unset (unknown) when compensating outside the run (recovery, an operator's retry).
	 */
	noPayment?: boolean;
	/** Run again by recovery: a step may have taken effect before the node died. */
	recovering?: boolean;
	/**
	 * Its calls are made even once the request's deadline has passed (see callFrom): while compensating,
	 * and for an order's follow-ups, which are owed whatever the request.
	 */
	outlivesDeadline?: boolean;
	/** The saga's journal: each step's mark rides on that step's write to the order. */
	log?: CarriedSagaLog;
	/**
	 * Log entries of steps that write nothing to the order themselves: they ride, with those steps'
	 * journal marks, on the write that ends the saga (one write fewer per checkout).
	 */
	endEntries?: OrderEventEntry[];
}

/** A checkout step's write, which records the step in the saga's journal too. */
export interface SagaJournalRef {
	log?: CarriedSagaLog;
	step: string;
}

export interface CheckoutSagaSettings {
	/** Test-only (NODE_ENV=test): the checkout step that throws; see injectCheckoutFailure. */
	checkoutFailAt: string | null;
	/** Overrides SHIPPING_FLAT_CENTS / FREE_SHIPPING_THRESHOLD_CENTS (tests). */
	shippingRates: ShippingRates | null;
}

/** What services/orders.service.ts itself provides to its mixins. */
export interface OrderHostMethods {
	/** One change of an order: a conditional update that also appends its events and records follow-ups. */
	changeOrder(orderId: string, change: OrderChange, journal?: SagaJournalRef): Promise<Order | null>;
	/** Calls on behalf of the checkout's request, or as the service itself when recovering. */
	callFrom(c: Checkout, action: string, params: Record<string, unknown>, opts?: { pastDeadline?: boolean }): Promise<any>;
}

export interface CheckoutSagaMethods {
	checkoutSteps(): SagaStep<Checkout>[];
	snapshotCart(c: Checkout): Promise<void>;
	releaseCart(c: Checkout): Promise<void>;
	claimIsStale(orderId: string): Promise<boolean>;
	limitUnpaidOrders(c: Checkout): Promise<void>;
	loadAddress(c: Checkout): Promise<void>;
	createOrder(c: Checkout): Promise<void>;
	cancelFailedOrder(c: Checkout, cause: unknown): Promise<void>;
	reserveStock(c: Checkout): Promise<void>;
	releaseStock(c: Checkout, reason: string): Promise<void>;
	consumePromo(c: Checkout): Promise<void>;
	releasePromo(c: Checkout): Promise<void>;
	charge(c: Checkout): Promise<void>;
	refundCharge(c: Checkout): Promise<void>;
	confirmOrder(c: Checkout): Promise<void>;
	commitStock(c: Checkout): Promise<void>;
	clearCart(c: Checkout): Promise<void>;
	publishOrder(c: Checkout): Promise<void>;
	runCheckout(ctx: Context<CheckoutParams, ShopMeta>, orderId: string): Promise<Order>;
	announceFailedCheckout(ctx: Context, c: Checkout, cause: unknown): Promise<void>;
	announceRecoveredFailure(orderId: string): Promise<void>;
	compensateCheckout(orderId: string, cause?: unknown, lookAtPayment?: boolean): Promise<CompensationFailure[]>;
	completeSaga(orderId: string, awaitingPayment: boolean, log: CarriedSagaLog, entries?: OrderEventEntry[]): Promise<Entity | null>;
	recoverCheckout(order: Order): Promise<void>;
	sagaLog(orderId: string): CarriedSagaLog;
	injectCheckoutFailure(step: string | null): void;
	appendEvent(orderId: string, type: string, data: Record<string, unknown>, journal?: SagaJournalRef): Promise<Order | null>;
	nextOrderNumber(now: Date): Promise<string>;
}

export interface CheckoutSagaVars extends OrderHostMethods, Pick<OrderFollowUpMethods, "refundRest" | "publishOnce" | "tryFollowUps">, Pick<OutboxThis, "publish"> {
	db: Collections;
	checkoutSaga: Saga<Checkout>;
	/** Orders whose checkout saga runs in this process now: the saga records their payment itself. */
	checkoutsHere: Set<string>;
	shippingRates: ShippingRates;
	failAt: string | null;
}
type CheckoutSagaThis = Service<CheckoutSagaSettings> & CheckoutSagaMethods & CheckoutSagaVars;

const checkoutSagaSchema: Partial<ServiceSchema<CheckoutSagaSettings, CheckoutSagaMethods, CheckoutSagaVars>> = {
	settings: { checkoutFailAt: null, shippingRates: null },

	methods: {
		/** The checkout, step by step; each compensation sits next to the step it undoes. */
		checkoutSteps(): SagaStep<Checkout>[] {
			return [
				// The cart is claimed for this order until clearCart lets it go. Released whenever the saga stops here
				// too: a claim whose answer was lost, or a cart refused after it was claimed, holds nothing back.
				// Releasing a claim this order never took changes nothing.
				{ name: "snapshotCart", run: (c) => this.snapshotCart(c), compensate: (c) => this.releaseCart(c), compensateIfInterrupted: true },
				{ name: "loadAddress", run: (c) => this.loadAddress(c) },
				{ name: "createOrder", run: (c) => this.createOrder(c), compensate: (c, cause) => this.cancelFailedOrder(c, cause) },
				// A reserve or a promo use whose answer was lost (or whose node died before the order said so) is
				// undone as well: a release before the reserve, or of a use never taken, changes nothing and is kept.
				// A refusal (a 4xx: out of stock, code used up) says it did nothing.
				{ name: "reserveStock", run: (c) => this.reserveStock(c), compensate: (c) => this.releaseStock(c, "checkout_failed"), compensateIfInterrupted: mayHaveTakenEffect },
				{ name: "consumePromo", run: (c) => this.consumePromo(c), compensate: (c) => this.releasePromo(c), compensateIfInterrupted: mayHaveTakenEffect },
				// After the order is stored: an erasure of the account that began before it is seen here (see
				// users.checkCanOrder). It writes nothing, so its journal mark rides on the next step's write: a
				// kill in that step reads as if it never started. Only the charge may follow it, whose effect
				// recovery finds by looking at the payment, whatever the journal says; a reserve or promo use
				// after it would stay held.
				{ name: "checkAccount", run: (c) => this.callFrom(c, "users.checkCanOrder", { userId: c.userId }) },
				{ name: "charge", run: (c) => this.charge(c), compensate: (c) => this.refundCharge(c) },
				{ name: "confirmOrder", run: (c) => this.confirmOrder(c) },
				{ name: "commitStock", run: (c) => this.commitStock(c) },
				{ name: "clearCart", run: (c) => this.clearCart(c) },
				{ name: "publishOrder", run: (c) => this.publishOrder(c) },
			];
		},

		async snapshotCart(c: Checkout) {
			// Claimed: a second checkout of this cart is refused (409 CHECKOUT_IN_PROGRESS) until this one ends.
			let cart;
			try {
				cart = await this.callFrom(c, "cart.snapshot", { userId: c.userId, claimFor: c.orderId });
			} catch (err: any) {
				// A claim whose checkout no longer runs (its request died, or its undoing or clear could not reach
				// the cart) is let go at once instead of holding the customer back until its lease ends.
				const heldBy = err?.type === "CHECKOUT_IN_PROGRESS" ? err.data?.heldBy : null;
				if (typeof heldBy !== "string" || !(await this.claimIsStale(heldBy))) throw err;
				this.logger.warn(`Cart of user ${c.userId} was still claimed by order ${heldBy}, whose checkout no longer runs: let go`);
				await this.callFrom(c, "cart.releaseCheckout", { userId: c.userId, orderId: heldBy });
				cart = await this.callFrom(c, "cart.snapshot", { userId: c.userId, claimFor: c.orderId });
			}
			await this.limitUnpaidOrders(c);
			// Lines that cannot be bought any more would silently drop out of the order: the customer reviews
			// the cart first. A short stock is for the reservation to decide, atomically.
			const blocking = (cart.problems ?? []).filter((p: { type: string }) => BLOCKING_CART_PROBLEMS.has(p.type));
			if (blocking.length) {
				const message = blocking.every((p: { type: string }) => p.type === "promo") ? "Your promotion code no longer applies: remove it or review your cart" : "Some items in your cart can no longer be bought";
				throw new ConflictError(message, "CART_HAS_PROBLEMS", { problems: blocking });
			}
			if (!cart.items?.length) {
				// An erasure under way empties the cart first: say that, not that the customer forgot to fill it.
				await this.callFrom(c, "users.checkCanOrder", { userId: c.userId });
				throw new ConflictError("Your cart is empty", "CART_EMPTY");
			}
			c.cart = cart;
		},

		/**
		 * Whether the checkout of `orderId` no longer runs: a running one has its Idempotency-Key running
		 * (taken before its claim) or its order's saga running.
		 */
		async claimIsStale(orderId: string) {
			if ((await this.db.idempotency_keys.count({ orderId, status: "running" })) > 0) return false;
			const order = (await this.db.orders.findById(orderId)) as unknown as Order | null;
			return order?.saga?.state !== "running";
		},

		/** Letting the cart go is never skipped for the request's deadline (see clearCart). */
		async releaseCart(c: Checkout) {
			await this.callFrom(c, "cart.releaseCheckout", { userId: c.userId, orderId: c.orderId }, { pastDeadline: true });
		},

		/**
		 * Each order waiting for its payment holds its stock until it expires: a few per customer at most.
		 * Counted while this checkout holds the customer's cart, so no other checkout of theirs runs
		 * between the count and this order's creation.
		 */
		async limitUnpaidOrders(c: Checkout) {
			const unpaid = await this.db.orders.count({ userId: c.userId, status: "pending", paymentStatus: "pending" });
			if (unpaid >= MAX_UNPAID_ORDERS) throw new ConflictError(`You have ${unpaid} orders waiting for payment: complete or cancel one first`, "TOO_MANY_UNPAID_ORDERS");
		},

		async loadAddress(c: Checkout) {
			try {
				c.address = await this.callFrom(c, "users.getAddress", { userId: c.userId, addressId: c.params!.shippingAddressId });
			} catch (err: any) {
				if (err?.code === 404) throw invalidField("shippingAddressId", "No such shipping address", "notFound");
				throw err;
			}
			// An address book keeps billing addresses too: a client that sent one would ship there without a word.
			if (c.address?.type === "billing") throw invalidField("shippingAddressId", "This is a billing address: choose a shipping address", "notShipping");
		},

		async createOrder(c: Checkout) {
			const cart = c.cart!;
			// Prices come from the cart service's snapshot, priced from the catalog now; never from the client.
			const items = orderLinesOf(cart.items);
			const totals = computeCheckoutTotals(items, cart.discount ?? 0, rateFor(this.shippingRates, cart.currency));
			// Prices are the catalog's now; a client that sends the total it showed is never charged another one,
			// nor the same number in another currency (a product moved to another currency since it was added).
			const { expectedTotal, expectedCurrency } = c.params ?? {};
			const priceChanges = (cart.problems ?? []).filter((p: { type: string }) => p.type === "price_changed");
			const currencyChanged = expectedCurrency
				? expectedCurrency.toUpperCase() !== cart.currency
				: expectedTotal !== undefined && priceChanges.some((p: { previousCurrency?: string }) => p.previousCurrency !== undefined);
			if ((expectedTotal !== undefined && expectedTotal !== totals.total) || currencyChanged) {
				throw new ConflictError("The total changed since you saw it: review your cart", "TOTAL_CHANGED", { expectedTotal: expectedTotal ?? null, ...(expectedCurrency ? { expectedCurrency } : {}), ...totals, currency: cart.currency, priceChanges });
			}
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
				// The cart as it was bought: what a recovered checkout may clear (see clearCart).
				cartVersion: typeof cart.version === "number" ? cart.version : null,
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
				events: [createdEvent(now)],
				saga: { state: "running", completed: c.log?.carry("createOrder") ?? [], compensated: [], runner: { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID } },
				createdAt: now,
				updatedAt: now,
			});
			c.order = order as unknown as Order;
			c.log?.carried(order.saga.completed);
		},

		async cancelFailedOrder(c: Checkout, cause: unknown) {
			const reason = cancelReasonOf(cause);
			const when = { status: { $in: OrderStateMachine.sourcesOf("cancelled") } };
			const set = { status: "cancelled", cancelReason: reason, cancelledAt: new Date() };
			const cancelled = { type: "cancelled", data: { reason, detail: (cause as Error | undefined)?.message ?? null } };
			// No charge was made and none will be: the order says so rather than "pending" for ever. A decline has
			// recorded "failed", a charge its refund; a payment this run cannot vouch for stays pending, to be looked at.
			if (c.noPayment) {
				const done = await this.changeOrder(c.orderId, {
					when: { ...when, paymentStatus: "pending" },
					set: { ...set, paymentStatus: "cancelled" },
					event: [cancelled, PAYMENT_CANCELLED_EVENT],
				});
				if (done) return;
			}
			await this.changeOrder(c.orderId, { when, set, event: cancelled });
		},

		async reserveStock(c: Checkout) {
			const items = c.order!.items.map((l) => ({ variantId: l.variantId, quantity: l.quantity }));
			try {
				await this.callFrom(c, "products.reserve", { orderId: c.orderId, items });
			} catch (err: any) {
				// Not the buyer's doing: a node died mid-reserve and the reservation was rolled back, or a run of
				// it is still going. A 503 frees the key, so the buyer's retry makes a new order.
				if (INTERRUPTED_RESERVATION.has(err?.type)) throw new ServiceUnavailableError("The stock reservation was interrupted, retry", { reason: err.type });
				throw err;
			}
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
			const res = await this.callFrom(c, "cart.releasePromo", { code: order.promoCode, orderId: c.orderId });
			if (res?.released !== false) await this.appendEvent(c.orderId, "promo_released", { code: order.promoCode });
		},

		async charge(c: Checkout) {
			const order = c.order!;
			// A fully discounted order with free shipping has nothing to charge.
			if (order.total === 0) {
				await this.changeOrder(c.orderId, { set: { paymentStatus: "succeeded" }, event: { type: "payment_succeeded", data: { paymentId: null, amount: 0 } } }, { log: c.log, step: "charge" });
				return;
			}
			let payment: any;
			c.noPayment = false;
			c.chargeUnsettled = true;
			try {
				payment = await this.callFrom(c, "payments.charge", { orderId: c.orderId, orderNumber: order.number, userId: c.userId, amount: order.total, currency: order.currency, paymentMethod: c.params!.paymentMethod });
			} catch (err: any) {
				if (err?.code === 402) {
					await this.changeOrder(c.orderId, { set: { paymentStatus: "failed" }, event: { type: "payment_failed", data: { reason: err.message, type: err.type ?? null } } });
				}
				// A refusal (the decline, or any other 4xx) charged nothing; anything else may have.
				c.chargeUnsettled = mayHaveTakenEffect(err);
				c.noPayment = !c.chargeUnsettled;
				throw err;
			}
			const paymentRef = { id: payment.id, cardBrand: payment.cardBrand, cardLast4: payment.cardLast4, ...(payment.clientSecret ? { clientSecret: payment.clientSecret } : {}) };
			if (payment.status !== "succeeded") {
				c.awaitingPayment = true;
				await this.changeOrder(c.orderId, { set: { payment: paymentRef } }, { log: c.log, step: "charge" });
				c.chargeUnsettled = false;
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
			c.chargeUnsettled = false;
		},

		async refundCharge(c: Checkout) {
			const order = (await this.db.orders.findById(c.orderId)) as Order | null;
			if (!order || order.paidAmount - order.refundedAmount <= 0) return;
			// The key is derived from the order, so a repeated compensation cannot refund twice.
			// The checkout is undone: its order never was a sale.
			await this.refundRest(c, "checkout_failed", `${c.orderId}-saga`, false);
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
			// Committing again is no change (a recovered run repeats it if the node died before the saga's end
			// was stored), so its mark and log entry wait for that write.
			await this.callFrom(c, "products.commit", { orderId: c.orderId });
			(c.endEntries ??= []).push({ type: "stock_committed", data: {} });
		},

		async clearCart(c: Checkout) {
			// The cart as bought (its snapshot's version) is emptied. One the customer changed meanwhile (another
			// tab) loses what was bought and keeps what was added: cleared only at its version, it kept the bought
			// lines, which a next checkout bought again. A recovered checkout has no snapshot: it clears the cart
			// only if it is still the one bought (its version on the order), as it may have cleared it already.
			// Either way the cart's claim for this order goes in that same write: the next checkout may start.
			const version = c.cart ? c.cart.version : c.order?.cartVersion;
			const clear = !!c.cart || typeof version === "number";
			const bought = c.cart ? { lines: c.cart.items.map((l: { variantId: string; quantity: number }) => ({ variantId: l.variantId, quantity: l.quantity })), promoCode: c.cart.promoCode ?? null } : undefined;
			// The order is paid: a cart that cannot be cleared (or changed meanwhile) is no reason to undo it; a
			// claim left behind by a failed clear ends with its lease. Not skipped when the request ran out of
			// time on the way here: the sale is made, and the customer's next checkout must not wait for the lease.
			try {
				if (clear) await this.callFrom(c, "cart.clear", { userId: c.userId, version, orderId: c.orderId, ...(bought ? { bought } : {}) }, { pastDeadline: true });
				else await this.releaseCart(c);
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
			const c: Checkout = { ctx, orderId, userId: ctx.meta.user!.id, params: ctx.params, log, noPayment: true };
			this.checkoutsHere.add(orderId);
			try {
				await this.checkoutSaga.run(c, log);
			} catch (err) {
				const failed = this.checkoutSaga.owedCompensations(await log.load(), err).length > 0;
				// Undone, but the provider may have charged (its answer was lost), or holds a payment waiting for 3-D
				// Secure: it is looked at, and stopped. (Left half undone, recovery does this.)
				const lookAtPayment = (!!c.chargeUnsettled || !!c.awaitingPayment) && !failed;
				const followUps = lookAtPayment ? FOLLOW_UPS_AFTER.undoneAfterCharge : [];
				await this.db.orders.updateOne({ id: orderId }, sagaEndUpdate(failed ? "compensation_failed" : "compensated", log.carry(), followUps, c.endEntries));
				if (lookAtPayment) await this.tryFollowUps(ctx, orderId);
				await this.announceFailedCheckout(ctx, c, err);
				throw err;
			} finally {
				this.checkoutsHere.delete(orderId);
			}
			const completed = await this.completeSaga(orderId, !!c.awaitingPayment, log, c.endEntries);
			if (!c.awaitingPayment) return completed as unknown as Order;
			// Its follow-ups may change it again.
			await this.tryFollowUps(ctx, orderId);
			return (await this.db.orders.findById(orderId)) as any;
		},

		/**
		 * A checkout that created its order and then failed (declined, out of stock, ...) is announced as
		 * `checkout.failed`, for the funnel's started checkouts and the failures by reason. Only analytics
		 * listens; the customer already has the answer. Best effort: a lost announcement loses a count.
		 */
		async announceFailedCheckout(ctx: Context, c: Checkout, cause: unknown) {
			if (!c.order) return;
			try {
				await this.publish(ctx, "checkout.failed", { ...eventPayload(c.order), status: "cancelled", reason: cancelReasonOf(cause) });
			} catch (err) {
				this.logger.warn(`checkout.failed of order ${c.orderId} not announced:`, (err as Error).message);
			}
		},

		/**
		 * Runs the compensations of an order's checkout that are not done yet (recovery after a crash, or
		 * an operator's retry). Each one ran at most once before, so calling this again changes nothing.
		 * `lookAtPayment`: the charge may have gone through unrecorded, so a checkout fully undone also
		 * looks at its payment.
		 */
		async compensateCheckout(orderId: string, cause?: unknown, lookAtPayment = false) {
			const order = await this.db.orders.findById(orderId);
			if (!order) throw new NotFoundError("Order");
			const c: Checkout = { ctx: null, orderId, userId: order.userId, order: order as any };
			const failures = await this.checkoutSaga.compensate(c, this.sagaLog(orderId), cause);
			const followUps = lookAtPayment && !failures.length ? FOLLOW_UPS_AFTER.undoneAfterCharge : [];
			await this.db.orders.updateOne({ id: orderId, "saga.state": { $ne: "completed" } }, sagaEndUpdate(failures.length ? "compensation_failed" : "compensated", [], followUps));
			return failures;
		},

		/**
		 * The saga is done; one that ended waiting for its payment also records a look at the payment,
		 * as news of it that came while the saga ran was ignored then.
		 */
		completeSaga(orderId: string, awaitingPayment: boolean, log: CarriedSagaLog, entries: OrderEventEntry[] = []) {
			return this.db.orders.updateOne({ id: orderId }, sagaEndUpdate("completed", log.carry(), awaitingPayment ? FOLLOW_UPS_AFTER.awaitingPayment : [], entries));
		},

		/**
		 * A checkout that got past the charge rolls forward (the journal skips the done steps); any other
		 * is undone, and its payment looked at: it may have charged before the node died.
		 */
		async recoverCheckout(order: Order) {
			let view: ReturnType<typeof orderView> | null = null;
			// Past the charge it rolls forward, unless its undoing had begun (a later step failed, and the run died
			// or could not record its end): that is finished instead, the charge refunded.
			if (order.saga.state === "running" && order.saga.completed.includes("charge") && !order.saga.compensated?.length) {
				const log = this.sagaLog(order.id);
				const c: Checkout = { ctx: null, orderId: order.id, userId: order.userId, order, awaitingPayment: order.paymentStatus !== "succeeded", recovering: true, log };
				try {
					await this.checkoutSaga.run(c, log);
					view = orderView((await this.completeSaga(order.id, !!c.awaitingPayment, log, c.endEntries)) as any);
				} catch (err) {
					this.logger.warn(`Interrupted checkout ${order.id} failed to complete and was compensated:`, (err as Error).message);
				}
			} else {
				// It may have charged before it died without the order knowing: undone, it also looks at the
				// payment (the caller drives that follow-up). Left half undone, the next round retries.
				const failures = await this.compensateCheckout(order.id, new Error("checkout interrupted"), true);
				if (failures.length) return;
			}
			// The key answers with the order from now on, or is freed for a retry.
			if (view) await this.db.idempotency_keys.updateOne({ orderId: order.id, status: "running" }, { $set: { status: "completed", response: view } });
			else {
				await this.db.idempotency_keys.removeMany({ orderId: order.id, status: "running" });
				await this.announceRecoveredFailure(order.id);
			}
			this.logger.warn(`Recovered interrupted checkout of order ${order.id}: ${view ? "completed" : "compensated"}`);
		},

		/**
		 * An undone checkout is announced as one that failed in its run is (checkout.failed): analytics
		 * counts it as started, and as a cancelled order, as GET /orders lists it. Once, whatever the rounds.
		 */
		async announceRecoveredFailure(orderId: string) {
			const undone = (await this.db.orders.findById(orderId)) as unknown as Order | null;
			if (undone?.status !== "cancelled") return;
			const payload = { ...eventPayload(undone), status: "cancelled", reason: undone.cancelReason ?? "checkout_failed" };
			await this.publishOnce(null, [{ event: "checkout.failed", payload }], new Date(undone.createdAt)).catch((err: Error) =>
				this.logger.warn(`checkout.failed of order ${orderId} not announced:`, err.message),
			);
		},

		/**
		 * The saga journal, kept on the order once it exists (the steps before it have nothing to undo).
		 * Completion marks ride on the steps' own writes (see CarriedSagaLog): no write of their own.
		 */
		sagaLog(orderId: string): CarriedSagaLog {
			return new CarriedSagaLog({
				load: async () => {
					const saga = ((await this.db.orders.findById(orderId)) as unknown as Order | null)?.saga ?? null;
					// Another run took the checkout over (this one was thought gone): it decides; this one stops, undoing nothing.
					if (saga?.runner && saga.runner.instanceID !== this.broker.instanceID) throw new SagaTakenOverError(orderId);
					return saga;
				},
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

		appendEvent(orderId: string, type: string, data: Record<string, unknown>, journal?: SagaJournalRef) {
			return this.changeOrder(orderId, { event: { type, data } }, journal);
		},

		async nextOrderNumber(now: Date): Promise<string> {
			const day = orderNumberDay(now);
			const counter = await this.db.counters.updateOne({ id: `order-number-${day}` }, { $inc: { value: 1 } }, { upsert: true });
			return formatOrderNumber(now, counter!.value);
		},
	} satisfies CheckoutSagaMethods & ThisType<CheckoutSagaThis>,

	created() {
		const cfg = readConfig();
		this.checkoutsHere = new Set();
		this.shippingRates = this.settings.shippingRates ?? shippingRatesOf(cfg);
		this.failAt = process.env.NODE_ENV === "test" ? this.settings.checkoutFailAt : null;
		const steps = this.checkoutSteps().map((step) => ({
			...step,
			run: async (c: Checkout) => {
				if (this.failAt === step.name) throw new Errors.MoleculerError(`Injected failure at ${step.name}`, 500, "INJECTED_FAILURE");
				await step.run(c);
			},
		}));
		this.checkoutSaga = new Saga<Checkout>("checkout", steps, {
			onCompensating: (c) => {
				c.outlivesDeadline = true;
			},
			onCompensationError: ({ step, error }) => this.logger.error(`Checkout compensation ${step} failed; it stays pending:`, error),
		});
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const CheckoutSagaMixin: Partial<ServiceSchema<any, any, any, any>> = checkoutSagaSchema;
