/**
 * Where carts live: one small interface, an embedded store (default) and Redis (REDIS_URL).
 * A cart belongs to an owner key (`u:<userId>` or `g:<guestCartId>`); every write is one atomic
 * step that also checks its limits, so concurrent requests never lose or exceed a quantity.
 * A checkout holds the cart it buys (its order id, for a lease) from its snapshot until it clears
 * the cart, so two checkouts of one cart never both buy it.
 */
import type { CartLine } from "../../lib/cart-pricing";

export interface StoredCart {
	lines: CartLine[];
	promoCode: string | null;
	/** Changes on every write; 0 for a cart never written (or expired). */
	version: number;
}

/** A line to write: the quantity, and the catalog price the customer saw, in its currency. */
export interface LineWrite {
	variantId: string;
	quantity: number;
	unitPrice: number;
	currency: string;
}

export interface LineLimits {
	/** Most units one line may hold (99). */
	maxQuantity: number;
	/** Units in stock now: the line may not hold more. */
	available: number;
}

export type LineRefusal = "quantity" | "stock" | "lines" | "missing";

export type LineResult =
	| { ok: true; quantity: number; version: number }
	/** `quantity` is what the line holds now (0 when absent). */
	| { ok: false; reason: LineRefusal; quantity: number };

export interface MergeLine extends LineWrite {
	/** The merged line holds at most this many (stock and the per-line maximum). */
	cap: number;
}

/** What a checkout bought of a cart: its lines' quantities and its code. */
export interface BoughtLines {
	lines: Array<{ variantId: string; quantity: number }>;
	promoCode: string | null;
}

/** A checkout's claim on a cart: the cart as it was claimed, or the other order holding it. */
export type CheckoutClaim = { claimed: true; cart: StoredCart } | { claimed: false; heldBy: string };

export interface CartStore {
	get(owner: string): Promise<StoredCart>;
	/** Adds to a line (creating it), refused when the total would pass a limit or a new line would pass maxLines. */
	addItem(owner: string, line: LineWrite, limits: LineLimits & { maxLines: number }): Promise<LineResult>;
	/** Sets an existing line's quantity (>= 1); refused with "missing" when the cart has no such line. */
	setQuantity(owner: string, line: LineWrite, limits: LineLimits): Promise<LineResult>;
	/** True when the line was there. */
	removeItem(owner: string, variantId: string): Promise<boolean>;
	/** null removes the code. Returns the new version. */
	setPromo(owner: string, code: string | null): Promise<number>;
	/**
	 * Empties the cart (lines and code); with `version`, only if the cart is still at it. With
	 * `releaseFor`, that order's checkout claim goes in the same write, whether the cart was emptied or
	 * not, and a cart another order's checkout holds is not emptied (that one is buying it).
	 * With `bought` (a checkout's snapshot), a cart changed since its version loses what was bought
	 * instead of nothing: each bought line's quantity comes off its line (gone at 0), and the code if it
	 * is still the one bought with; lines added meanwhile stay. True when the cart was emptied or so.
	 */
	clear(owner: string, version?: number, releaseFor?: string, bought?: BoughtLines): Promise<boolean>;
	/**
	 * Claims the cart for an order's checkout for `leaseMs`, in one atomic step, and reads it. Refused
	 * while another order holds an unexpired claim; the same order claiming again renews its lease.
	 * The claim does not change the cart's version; the customer may still change the cart.
	 */
	claimCheckout(owner: string, orderId: string, leaseMs: number): Promise<CheckoutClaim>;
	/** Drops the order's claim; true when it held one. Another order's claim is left alone. */
	releaseCheckout(owner: string, orderId: string): Promise<boolean>;
	/** Reads and deletes the cart in one step, so a guest cart is merged at most once. */
	take(owner: string): Promise<StoredCart>;
	/** Sums lines into the cart, each capped; lines past maxLines are dropped. Returns how many lines changed. */
	mergeLines(owner: string, lines: MergeLine[], maxLines: number): Promise<number>;
	close(): Promise<void>;
}

/** Carts untouched for this long expire (refreshed on every write). */
export const CART_TTL_SECONDS = 7 * 24 * 3600;

/**
 * How long a checkout claim holds a cart: far longer than a checkout's request (10 s). It ends by
 * itself when its checkout's node died before the order existed or before the cart was cleared (the
 * cart service unreachable then), or when a checkout runs longer than this (recovery of a node lost
 * for minutes): then another checkout may claim the cart, and the older one's clear leaves it alone.
 */
export const CHECKOUT_LEASE_MS = 5 * 60_000;

export function emptyCart(): StoredCart {
	return { lines: [], promoCode: null, version: 0 };
}
