/**
 * Pure rules of the inventory: reservation lines, reservation states and their transitions, and
 * the stock check. The products service applies them with atomic conditional updates.
 */

export interface StockLine {
	variantId: string;
	quantity: number;
}

/** What moved stock, as written to the audit trail (`inventory_transactions.type`). */
export const MOVEMENT_TYPES = ["purchase", "sale", "reservation", "release", "adjustment", "return"] as const;
export type MovementType = (typeof MOVEMENT_TYPES)[number];

/**
 * Life of an order's reservation. `pending` while a reserve is applying its lines; `cancelling`
 * when a release arrives meanwhile (the reserve then puts everything back itself).
 */
export type ReservationStatus = "pending" | "reserved" | "cancelling" | "released" | "committed" | "returned";

/** Release takes whichever of these matches, in one conditional update each. */
export const RELEASE_TRANSITIONS: ReadonlyArray<{ from: ReservationStatus; to: ReservationStatus; movement: MovementType }> = [
	{ from: "reserved", to: "released", movement: "release" },
	// Released after commit (a cancelled or refunded order): the goods come back as a return.
	{ from: "committed", to: "returned", movement: "return" },
];

/** States in which the order's stock is back on the shelf. */
export const RELEASED_STATES: ReadonlySet<ReservationStatus> = new Set(["released", "returned"]);

/** Two lines for the same variant count as one: their quantities are summed before any check. */
export function mergeLines(items: StockLine[]): StockLine[] {
	const merged = new Map<string, number>();
	for (const { variantId, quantity } of items) merged.set(variantId, (merged.get(variantId) ?? 0) + quantity);
	return [...merged].map(([variantId, quantity]) => ({ variantId, quantity }));
}

/** Same variants and quantities, in any order and however split: a repeated reserve of one order. */
export function sameLines(a: StockLine[], b: StockLine[]): boolean {
	const left = mergeLines(a);
	const right = new Map(mergeLines(b).map((l) => [l.variantId, l.quantity]));
	return left.length === right.size && left.every((l) => right.get(l.variantId) === l.quantity);
}

export interface StockCheckItem {
	variantId: string;
	requested: number;
	available: number;
	ok: boolean;
}

/**
 * Whether each (merged) line could be served now. Unknown variants and archived products have
 * nothing available. Advisory only: reserve re-checks atomically.
 */
export function checkLines(items: StockLine[], stockOf: (variantId: string) => number | undefined): { ok: boolean; items: StockCheckItem[] } {
	const result = mergeLines(items).map(({ variantId, quantity }) => {
		const available = Math.max(0, stockOf(variantId) ?? 0);
		return { variantId, requested: quantity, available, ok: available >= quantity };
	});
	return { ok: result.every((r) => r.ok), items: result };
}
