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

/*
 * Recovering from a crash at any point of a reservation's stock work.
 *
 * A mark on the reservation written before or after a decrement cannot tell, after a crash between
 * the two writes, whether the decrement happened. So the record of each line lives on the variant,
 * in the same atomic update as the stock:
 *
 *   H (holds). `variant.holds[reservationId] = q > 0` exactly while that reservation's decrement
 *     of q is in effect: it is set by the decrement itself, removed by the put-back itself, and
 *     removed without any stock change when the reservation is sold (commit). A decrement also
 *     requires the hold to be absent, so a reservation takes a variant at most once.
 *     `holds[reservationId] = 0` is a fence written only by recovery: that reservation never
 *     took the variant and, if its reserve is somehow still running, now never will.
 *   A (audit). The audit rows of a line have unique keys (reservation, variant, movement), so
 *     each is written at most once and "write it unless it is there" is safe to repeat. The
 *     `reservation` row is written only after its decrement, the `release` row only after its
 *     put-back, and a line is put back only once its `reservation` row exists (the reserve writes
 *     it right after the decrement, a reservation is `reserved` only with all its rows, and
 *     recovery writes a missing one before putting back).
 *
 * So a crash leaves, per line, at most a decrement without its row (hold present) or a put-back
 * without its row (hold gone, `reservation` row present). `rollbackSteps` completes either: after a
 * rollback every line has both rows (taken and returned, net 0) or neither (never taken), stock
 * taken goes back exactly once, and each variant's audit trail again sums to its stock.
 *
 * Which reservations may have unfinished line work: those with `holdsOpen`, set when the record
 * is claimed and cleared by whoever made its last status change once its line work is done.
 */

/** The field of a variant that holds a reservation's quantity (reservation ids are base64url). */
export function holdField(reservationId: string): string {
	return `holds.${reservationId}`;
}

/** The unique key of one audit row of a reservation line. */
export function movementKey(reservationId: string, variantId: string, type: MovementType): string {
	return `${reservationId}:${variantId}:${type}`;
}

export type RollbackStep = "recordTake" | "putBack" | "recordPutBack";

/**
 * What is left to do to roll back one line, from what a crash left behind: whether the variant
 * still holds the line and which of the line's two audit rows exist (invariants H and A above).
 */
export function rollbackSteps(found: { held: boolean; takeRow: boolean; putBackRow: boolean }): RollbackStep[] {
	const taken = found.held || found.takeRow || found.putBackRow;
	if (!taken) return [];
	const steps: RollbackStep[] = [];
	if (!found.takeRow) steps.push("recordTake");
	if (found.held) steps.push("putBack");
	if (!found.putBackRow) steps.push("recordPutBack");
	return steps;
}

/**
 * What the sweeper does with a reservation whose line work stayed open past the threshold, by its
 * status. `rollback` puts back what is still held; `settle` (a sale) only drops the holds and
 * never moves stock. `reserved` is absent: an order waiting for its payment keeps its stock until
 * orders commits or releases it.
 */
export const SWEEP_TRANSITIONS: Readonly<Partial<Record<ReservationStatus, { to: ReservationStatus; work: "rollback" | "settle"; reason?: string }>>> = {
	pending: { to: "released", work: "rollback", reason: "expired" }, // its reserve died mid-way
	cancelling: { to: "released", work: "rollback" }, // a release came, then the reserve died
	released: { to: "released", work: "rollback" }, // a release (or an earlier sweep) died mid-way
	committed: { to: "committed", work: "settle" }, // a commit died before dropping the holds
	returned: { to: "returned", work: "settle" },
};

export const SWEPT_STATUSES = Object.keys(SWEEP_TRANSITIONS) as ReservationStatus[];

/** While a reserve applies its lines: its node's run finishes or puts back what it took, or, once that run is over, the sweeper. */
export const RESERVING_STATUSES: ReservationStatus[] = ["pending", "cancelling"];

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
