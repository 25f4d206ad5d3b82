/**
 * The products service's stock ledger, split out of services/products.service.ts for size; only
 * that service uses it. It holds the work behind reserve, release and commit, stock changes outside
 * reservations, their audit rows and `inventory.changed`, and the sweeper that finishes what a
 * crash left half done (the invariants are in lib/inventory-rules.ts).
 *
 * The host declares the collections (DbMixin with `productCollections`) and `announce`. List this
 * mixin before DbMixin: Moleculer starts mixins in reverse list order and stops them in list order,
 * so the sweeper starts after the collections open and stops before they close.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { newId, type Collection, type Entity } from "./collection";
import { aloneOnItsStore } from "./db.mixin";
import { brokerRunView, runnerState, type SagaRunner } from "../lib/checkout-recovery";
import { ConflictError, InsufficientStockError, NotFoundError, isDuplicate } from "../lib/errors";
import type { Product, Variant } from "../lib/catalog-views";
import { mergeLines, sameLines, holdField, movementKey, rollbackSteps, RELEASE_TRANSITIONS, RELEASED_STATES, RESERVING_STATUSES, SWEEP_TRANSITIONS, SWEPT_STATUSES, type MovementType, type ReservationStatus, type StockLine } from "../lib/inventory-rules";

export type Row<T> = T & Entity;
interface Reservation {
	orderId: string;
	status: ReservationStatus;
	items: Array<StockLine & { productId: string }>;
	holdsOpen?: boolean;
	/** A return whose stock is not all back yet (see releaseStock). */
	returnOpen?: boolean;
	reason?: string;
	/** The node run whose reserve applies the lines (absent on reservations made before it was recorded). */
	runner?: SagaRunner;
	createdAt: Date;
	updatedAt: Date;
}
/** A stock movement between its stock update and its audit row. */
export interface ParkedMove { key: string; delta: number; type: MovementType; reference: string; userId?: string; since: number }

/**
 * A new variant with its opening stock parked on it as a purchase, in the same write that stores it:
 * finishMove writes its audit row, or the sweeper does after a crash, so no stock is ever without one.
 */
export function withOpeningStock<T extends { stock: number }>(variant: T, now: Date): T & { pendingMove?: ParkedMove } {
	if (variant.stock <= 0) return variant;
	return { ...variant, pendingMove: { key: `opening:${newId()}`, delta: variant.stock, type: "purchase", reference: "initial stock", since: now.getTime() } };
}
type HeldVariant = Variant & { holds?: Record<string, number>; pendingMove?: ParkedMove };
/** What the stock work of a reservation needs to know of it. */
type ReservationRef = Pick<Row<Reservation>, "id" | "orderId">;
interface MovementExtra {
	userId?: string;
	key?: string;
	recovered?: boolean;
}

/** The collections of the products service that the ledger works on. */
export interface InventoryDb {
	products: Collection<Row<Product>>;
	variants: Collection<Row<HeldVariant>>;
	inventory_transactions: Collection;
	reservations: Collection<Row<Reservation>>;
}

interface InventorySettings extends ServiceSettingSchema {
	reservationSweep: {
		/** A reservation whose stock work has not finished this long after its last change is taken as crashed. Keep it well above the request timeout. */
		staleAfterMs: number;
		/** How often each node sweeps (also once at start); 0 turns the sweeper off. */
		intervalMs: number;
	};
}

/** How long a duplicate reserve waits for the first call of the same order to finish. */
const RESERVE_WAIT_MS = 3000;
const RESERVE_POLL_MS = 20;
/** How long a stock change waits for the variant's parked movement to be recorded. */
const MOVE_WAIT_MS = 3000;
const MOVE_POLL_MS = 5;
/** Stale reservations finished per sweep; the next sweep takes the rest. */
const SWEEP_BATCH = 100;

export interface InventoryMethods {
	reserveStock(ctx: Context, orderId: string, items: StockLine[]): Promise<{ orderId: string; items: Reservation["items"] }>;
	releaseStock(ctx: Context, orderId: string, reason: string): Promise<{ released: boolean; alreadyReleased?: boolean }>;
	commitStock(orderId: string): Promise<{ committed: boolean; alreadyCommitted?: boolean }>;
	sellableVariants(lines: StockLine[]): Promise<Map<string, Row<Variant>>>;
	moveStock(ctx: Context | null, variantId: string, delta: number, type: MovementType, reference: string, extra?: MovementExtra): Promise<Row<Variant> | null>;
	finishMove(ctx: Context | null, variant: Row<HeldVariant>, move: ParkedMove, recovered?: boolean): Promise<void>;
	sweepParkedMoves(now?: Date, staleAfterMs?: number): Promise<{ finished: number }>;
	recordMovement(ctx: Context | null, variant: Row<Variant>, delta: number, type: MovementType, reference: string, extra?: MovementExtra): Promise<void>;
	writeAuditRow(row: Record<string, unknown>): Promise<boolean>;
	claimReservation(id: string, orderId: string, items: Reservation["items"]): Promise<Row<Reservation> | null | "retry">;
	takeLine(ctx: Context, r: ReservationRef, line: StockLine): Promise<boolean>;
	putBackLine(ctx: Context | null, r: ReservationRef, line: StockLine): Promise<boolean>;
	putBackLines(ctx: Context | null, r: ReservationRef, lines: StockLine[]): Promise<void>;
	returnLines(ctx: Context | null, r: Row<Reservation>): Promise<void>;
	settleSale(r: Row<Reservation>): Promise<void>;
	closeReservation(r: ReservationRef): Promise<void>;
	finishCancelled(r: ReservationRef): Promise<void>;
	rollbackLine(r: Row<Reservation>, line: Reservation["items"][number]): Promise<void>;
	sweepReservations(now?: Date, staleAfterMs?: number): Promise<{ swept: number }>;
}

interface InventoryVars {
	db: InventoryDb;
	/** The host's broker event with an eventId. */
	announce(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<void>;
	/** The host's: products whose creation a crash interrupted, finished or undone once their moves are. */
	finishInterruptedCreations(staleAfterMs?: number): Promise<unknown>;
	sweepTimer?: NodeJS.Timeout;
	/** When this service started, for what the registry may know of other nodes' runs by now. */
	sweepStartedAt: number;
	sweeping?: Promise<unknown>;
}
type InventoryThis = Service<InventorySettings> & InventoryMethods & InventoryVars;

const inventorySchema: Partial<ServiceSchema<InventorySettings, InventoryMethods, InventoryVars>> = {
	settings: { reservationSweep: { staleAfterMs: 2 * 60_000, intervalMs: 30_000 } },

	methods: {
		/** Takes every line or none, once per order: a repeated call answers what the first one reserved. */
		async reserveStock(ctx: Context, orderId: string, items: StockLine[]) {
			const lines = mergeLines(items);
			const variants = await this.sellableVariants(lines);
			const reserved = lines.map((l) => ({ ...l, productId: variants.get(l.variantId)!.productId }));

			// Claim the order's reservation first: a duplicate call finds it and reserves nothing more.
			const r = { id: newId(), orderId };
			for (let waited = 0; ; waited += RESERVE_POLL_MS) {
				const existing = await this.claimReservation(r.id, orderId, reserved);
				if (existing === null) break;
				if (existing !== "retry") {
					if (RELEASED_STATES.has(existing.status)) throw new ConflictError("This order's reservation was released", "RESERVATION_RELEASED", { orderId });
					if (!sameLines(existing.items, lines)) throw new ConflictError("This order already reserved other items", "RESERVATION_MISMATCH", { orderId });
					if (existing.status === "reserved" || existing.status === "committed") return { orderId, items: existing.items };
					if (waited >= RESERVE_WAIT_MS) throw new ConflictError("A reservation for this order is in progress", "RESERVATION_IN_PROGRESS", { orderId });
				}
				await sleep(RESERVE_POLL_MS);
			}

			const taken: StockLine[] = [];
			for (const line of lines) {
				if (!(await this.takeLine(ctx, r, line))) {
					// All or nothing: what the earlier lines took goes back before we answer.
					await this.putBackLines(ctx, r, taken);
					// Nothing is held any more, so the record goes and the order may try again later.
					const removed = await this.db.reservations.removeOne({ id: r.id, status: "pending" });
					if (!removed) await this.finishCancelled(r);
					const variant = await this.db.variants.findById(line.variantId);
					// The sweeper fenced this line: it took us for crashed and rolled the reservation back.
					if (variant?.holds?.[r.id] === 0) throw new ConflictError("The reservation expired while it was being made", "RESERVATION_RELEASED", { orderId });
					throw new InsufficientStockError({ variantId: line.variantId, requested: line.quantity, available: variant?.stock ?? 0 });
				}
				taken.push(line);
			}
			const done = await this.db.reservations.updateOne({ id: r.id, status: "pending" }, { $set: { status: "reserved", updatedAt: new Date() } });
			if (!done) {
				// A release (or the sweeper) came while we were reserving: what we took goes back.
				await this.putBackLines(ctx, r, taken);
				await this.finishCancelled(r);
				throw new ConflictError("The reservation was released while it was being made", "RESERVATION_RELEASED", { orderId });
			}
			return { orderId, items: reserved };
		},

		/** Puts the order's stock back (or takes a sold order's back as a return), once. */
		async releaseStock(ctx: Context, orderId: string, reason: string) {
			for (;;) {
				for (const t of RELEASE_TRANSITIONS) {
					// A return is marked open until its stock is back: a crash in between leaves it to the sweeper
					// (the reservation was closed at commit, so nothing else would take it).
					const returning = t.movement === "return" ? { returnOpen: true } : {};
					const released = await this.db.reservations.updateOne({ orderId, status: t.from }, { $set: { status: t.to, reason, updatedAt: new Date(), ...returning } });
					if (released) {
						if (t.movement === "return") await this.returnLines(ctx, released);
						else if (released.holdsOpen !== undefined) await this.putBackLines(ctx, released, released.items);
						// Reserved before holds existed (no holdsOpen): its stock goes back unguarded, as it was taken.
						else for (const line of released.items) await this.moveStock(ctx, line.variantId, line.quantity, "release", orderId);
						await this.closeReservation(released);
						return { released: true };
					}
				}
				// A reserve still applying its lines sees "cancelling" at its end and puts everything back.
				if (await this.db.reservations.updateOne({ orderId, status: "pending" }, { $set: { status: "cancelling", reason, updatedAt: new Date() } })) return { released: true };
				const current = await this.db.reservations.findOne({ orderId });
				// `released` tells whether this call put stock back, so a caller records the release once.
				if (current && (RELEASED_STATES.has(current.status) || current.status === "cancelling")) return { released: false, alreadyReleased: current.items.length > 0 };
				if (current) continue; // it moved on between our updates: try the transitions again
				try {
					// Nothing reserved: a marker keeps a late-arriving reserve of this order from taking stock.
					await this.db.reservations.insert({ orderId, status: "released", items: [], reason, createdAt: new Date(), updatedAt: new Date() });
					return { released: false };
				} catch (err) {
					if (!isDuplicate(err)) throw err;
				}
			}
		},

		/** The reserved stock is sold: the holds go, the stock stays out. */
		async commitStock(orderId: string) {
			const committed = await this.db.reservations.updateOne({ orderId, status: "reserved" }, { $set: { status: "committed", updatedAt: new Date() } });
			if (committed) {
				await this.settleSale(committed);
				await this.closeReservation(committed);
				return { committed: true };
			}
			const current = await this.db.reservations.findOne({ orderId });
			return current?.status === "committed" ? { committed: true, alreadyCommitted: true } : { committed: false };
		},

		/** The variants of the lines, all known (404) and of products still on sale (409). */
		async sellableVariants(lines: StockLine[]) {
			const variants = new Map((await this.db.variants.find({ id: { $in: lines.map((l) => l.variantId) } })).map((v) => [v.id, v]));
			const missing = lines.find((l) => !variants.has(l.variantId));
			if (missing) throw new NotFoundError("Variant", { variantId: missing.variantId });
			const active = new Set((await this.db.products.find({ id: { $in: [...new Set([...variants.values()].map((v) => v.productId))] }, isActive: true }, { fields: ["id"] })).map((p) => p.id));
			const archived = [...variants.values()].find((v) => !active.has(v.productId));
			if (archived) throw new ConflictError("The product is no longer sold", "PRODUCT_ARCHIVED", { variantId: archived.id });
			return variants;
		},

		/**
		 * A stock change outside reservations (adjustment, return). One conditional update (a decrement
		 * only where enough is left) moves the stock and parks the movement on the variant; then its
		 * audit row is written and the parked movement cleared. A crash in between leaves it parked:
		 * the sweeper, or the variant's next movement, writes the missing row (`finishMove`). One
		 * parked movement per variant at a time, so others wait for it. With a key, a repeated call
		 * moves the stock once. Null when the variant is unknown or its stock was short.
		 */
		async moveStock(ctx: Context | null, variantId: string, delta: number, type: MovementType, reference: string, extra: MovementExtra = {}) {
			const move: ParkedMove = { key: extra.key ?? `move:${newId()}`, delta, type, reference, ...(extra.userId ? { userId: extra.userId } : {}), since: Date.now() };
			// A keyed change whose row is written has moved the stock already.
			if (extra.key && (await this.db.inventory_transactions.findOne({ key: move.key }))) return this.db.variants.findById(variantId);
			const deadline = Date.now() + MOVE_WAIT_MS;
			for (;;) {
				const enough = delta < 0 ? { stock: { $gte: -delta } } : {};
				const variant = await this.db.variants.updateOne({ id: variantId, ...enough, pendingMove: { $exists: false } }, { $inc: { stock: delta }, $set: { updatedAt: new Date(move.since), pendingMove: move } });
				if (variant) {
					await this.finishMove(ctx, variant, move);
					return variant;
				}
				const current = await this.db.variants.findById(variantId);
				if (!current) return null;
				const parked = current.pendingMove;
				if (!parked) {
					if (delta < 0 && current.stock < -delta) return null;
					continue;
				}
				// Our own key, moved by an earlier call that died before its row: only the row is missing.
				if (parked.key === move.key) {
					await this.finishMove(ctx, current, parked);
					return current;
				}
				if (Date.now() - parked.since > this.settings.reservationSweep.staleAfterMs) await this.finishMove(null, current, parked, true);
				else if (Date.now() > deadline) throw new ConflictError("Another stock change of this variant is being recorded, retry", "STOCK_CHANGE_IN_PROGRESS", { variantId });
				else await sleep(MOVE_POLL_MS);
			}
		},

		/** Writes a parked movement's audit row (once, by its key) and clears it from the variant. */
		async finishMove(ctx: Context | null, variant: Row<HeldVariant>, move: ParkedMove, recovered = false) {
			await this.recordMovement(ctx, variant, move.delta, move.type, move.reference, { key: move.key, userId: move.userId, recovered });
			await this.db.variants.updateOne({ id: variant.id, "pendingMove.key": move.key }, { $unset: { pendingMove: true } });
		},

		/** Movements parked longer than `staleAfterMs` (their process died): their rows are written. */
		async sweepParkedMoves(now = new Date(), staleAfterMs?: number) {
			const stale = staleAfterMs ?? this.settings.reservationSweep.staleAfterMs;
			const parked = await this.db.variants.find({ "pendingMove.since": { $lt: now.getTime() - stale } }, { limit: SWEEP_BATCH });
			for (const v of parked) {
				await this.finishMove(null, v, v.pendingMove!, true);
				this.logger.info(`Recorded the stock movement ${v.pendingMove!.key} of variant ${v.id} that a crash left without its audit row.`);
			}
			return { finished: parked.length };
		},

		/** The audit row of a stock change (the trail of a variant sums to its stock) and its event, once per key. */
		async recordMovement(ctx: Context | null, variant: Row<Variant>, delta: number, type: MovementType, reference: string, extra: MovementExtra = {}) {
			const { id: variantId, productId, stock } = variant;
			const { userId, key, recovered } = extra;
			const row = { variantId, productId, delta, type, reference, stockAfter: stock, ...(userId ? { userId } : {}), ...(key ? { key } : {}), ...(recovered ? { recovered } : {}), createdAt: new Date() };
			// Whoever writes the row announces the change, so a repeated repair announces nothing twice.
			if (await this.writeAuditRow(row)) await this.announce(ctx, "inventory.changed", { variantId, productId, stock, delta, type, reference });
		},

		/** False when a row with the same key is already there. */
		async writeAuditRow(row: Record<string, unknown>) {
			try {
				await this.db.inventory_transactions.insert(row);
				return true;
			} catch (err) {
				if (!isDuplicate(err)) throw err;
				return false;
			}
		},

		/** Null when this call now owns the order's reservation; otherwise the one already there. */
		async claimReservation(id: string, orderId: string, items: Reservation["items"]) {
			try {
				const now = new Date();
				const runner = { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID };
				await this.db.reservations.insert({ id, orderId, status: "pending", items, holdsOpen: true, runner, createdAt: now, updatedAt: now });
				return null;
			} catch (err) {
				if (!isDuplicate(err)) throw err;
				return (await this.db.reservations.findOne({ orderId })) ?? "retry";
			}
		},

		/** One line of a reservation: the decrement and the hold that proves it happened, in one update (invariant H). */
		async takeLine(ctx: Context, r: ReservationRef, line: StockLine) {
			const hold = holdField(r.id);
			const variant = await this.db.variants.updateOne(
				{ id: line.variantId, stock: { $gte: line.quantity }, [hold]: { $exists: false } },
				{ $inc: { stock: -line.quantity }, $set: { [hold]: line.quantity, updatedAt: new Date() } },
			);
			if (!variant) return false;
			await this.recordMovement(ctx, variant, -line.quantity, "reservation", r.orderId, { key: movementKey(r.id, line.variantId, "reservation") });
			return true;
		},

		/** Puts a line back only while the reservation holds it: the hold goes with the stock, so a repeat puts back nothing. */
		async putBackLine(ctx: Context | null, r: ReservationRef, line: StockLine) {
			const hold = holdField(r.id);
			const variant = await this.db.variants.updateOne({ id: line.variantId, [hold]: { $gt: 0 } }, { $inc: { stock: line.quantity }, $unset: { [hold]: true }, $set: { updatedAt: new Date() } });
			if (!variant) return false;
			await this.recordMovement(ctx, variant, line.quantity, "release", r.orderId, { key: movementKey(r.id, line.variantId, "release") });
			return true;
		},

		async putBackLines(ctx: Context | null, r: ReservationRef, lines: StockLine[]) {
			for (const line of lines) await this.putBackLine(ctx, r, line);
		},

		/** A sold order comes back: its stock returns (the holds went at commit, or go now if that commit was cut short). */
		async returnLines(ctx: Context | null, r: Row<Reservation>) {
			for (const line of r.items) await this.moveStock(ctx, line.variantId, line.quantity, "return", r.orderId, { key: movementKey(r.id, line.variantId, "return") });
			if (r.holdsOpen) await this.settleSale(r);
			await this.db.reservations.updateOne({ id: r.id, returnOpen: true }, { $set: { returnOpen: false } });
		},

		/** The stock left at reservation; the sale rows record what became of it (delta 0), and the holds go. */
		async settleSale(r: Row<Reservation>) {
			const now = new Date();
			for (const line of r.items) {
				await this.writeAuditRow({ variantId: line.variantId, productId: line.productId, delta: 0, quantity: line.quantity, type: "sale", reference: r.orderId, key: movementKey(r.id, line.variantId, "sale"), createdAt: now });
				const hold = holdField(r.id);
				await this.db.variants.updateOne({ id: line.variantId, [hold]: { $exists: true } }, { $unset: { [hold]: true } });
			}
		},

		/** The reservation's line work is done: the sweeper leaves it alone from now on. */
		async closeReservation(r: ReservationRef) {
			await this.db.reservations.updateOne({ id: r.id, holdsOpen: true }, { $set: { holdsOpen: false } });
		},

		/** A reserve that found its reservation cancelled has put its lines back: it completes the release. */
		async finishCancelled(r: ReservationRef) {
			const released = await this.db.reservations.updateOne({ id: r.id, status: "cancelling" }, { $set: { status: "released", updatedAt: new Date() } });
			if (released) await this.closeReservation(released);
		},

		/** Rolls back one line of a reservation claimed by the sweeper, whatever point a crash stopped at. */
		async rollbackLine(r: Row<Reservation>, line: Reservation["items"][number]) {
			const hold = holdField(r.id);
			// Fence a line the reservation does not hold: a reserve of it still running late cannot take it now.
			const fenced = await this.db.variants.updateOne({ id: line.variantId, [hold]: { $exists: false } }, { $set: { [hold]: 0 } });
			const variant = fenced ?? (await this.db.variants.findById(line.variantId));
			if (!variant) return;
			const takeKey = movementKey(r.id, line.variantId, "reservation");
			const putBackKey = movementKey(r.id, line.variantId, "release");
			const rows = new Set((await this.db.inventory_transactions.find({ key: { $in: [takeKey, putBackKey] } }, { fields: ["key"] })).map((t) => t.key));
			const held = !fenced && (variant.holds?.[r.id] ?? 0) > 0;
			for (const step of rollbackSteps({ held, takeRow: rows.has(takeKey), putBackRow: rows.has(putBackKey) })) {
				if (step === "recordTake") {
					await this.recordMovement(null, variant, -line.quantity, "reservation", r.orderId, { key: takeKey, recovered: true });
				} else if (step === "putBack") {
					// A put-back writes its own row; when a late reserve put it back meanwhile, the next step completes theirs.
					if (await this.putBackLine(null, r, line)) return;
				} else {
					const now = (await this.db.variants.findById(line.variantId)) ?? variant;
					await this.recordMovement(null, now, line.quantity, "release", r.orderId, { key: putBackKey, recovered: true });
				}
			}
		},

		/**
		 * Finishes reservations whose stock work stopped (a crash) more than `staleAfterMs` ago: rolls
		 * back pending or cancelled ones line by line, settles sold ones. Never touches `reserved`.
		 */
		async sweepReservations(now = new Date(), staleAfterMs?: number) {
			const cutoff = new Date(now.getTime() - (staleAfterMs ?? this.settings.reservationSweep.staleAfterMs));
			const stale = await this.db.reservations.find({ holdsOpen: true, status: { $in: SWEPT_STATUSES }, updatedAt: { $lt: cutoff } }, { sort: { updatedAt: 1 }, limit: SWEEP_BATCH });
			// Reserves whose run is known to be over (its node came back as a new run, or this node restarted),
			// whatever their age: their stock would otherwise be held for the stale window. A node the registry
			// lost is no proof (a paused process carries on): those wait to be stale.
			const view = brokerRunView(this.broker, this.sweepStartedAt);
			const open = await this.db.reservations.find({ holdsOpen: true, status: { $in: RESERVING_STATUSES }, updatedAt: { $gte: cutoff } }, { limit: SWEEP_BATCH });
			const orphaned = open.filter((r) => runnerState(r.runner, view) === "over");
			let swept = 0;
			for (const found of [...stale, ...orphaned]) {
				const next = SWEEP_TRANSITIONS[found.status]!;
				// The claim: one conditional update moves updatedAt on, so of two sweepers (on two nodes) only one
				// does the work, and a reserve still running sees it is no longer pending.
				const r = await this.db.reservations.updateOne(
					{ id: found.id, status: found.status, holdsOpen: true, updatedAt: found.updatedAt },
					{ $set: { status: next.to, updatedAt: now, ...(next.reason ? { reason: next.reason } : {}) } },
				);
				if (!r) continue;
				try {
					if (next.work === "rollback") for (const line of r.items) await this.rollbackLine(r, line);
					else await this.settleSale(r);
					await this.closeReservation(r);
					swept++;
					this.logger.info(`Swept the ${found.status} reservation of order ${r.orderId} (${next.work}).`);
				} catch (err) {
					// Still open: a later sweep, after the threshold, takes it again from where this one stopped.
					this.logger.warn(`Sweeping the reservation of order ${r.orderId} failed:`, (err as Error).message);
				}
			}
			// Returns a crash cut short: their stock moves are keyed, so redoing them moves each line once.
			const returns = await this.db.reservations.find({ status: "returned", returnOpen: true, updatedAt: { $lt: cutoff } }, { sort: { updatedAt: 1 }, limit: SWEEP_BATCH });
			for (const found of returns) {
				const r = await this.db.reservations.updateOne({ id: found.id, status: "returned", returnOpen: true, updatedAt: found.updatedAt }, { $set: { updatedAt: now } });
				if (!r) continue;
				try {
					await this.returnLines(null, r);
					swept++;
					this.logger.info(`Finished the return of order ${r.orderId}'s stock.`);
				} catch (err) {
					this.logger.warn(`Finishing the return of order ${r.orderId} failed:`, (err as Error).message);
				}
			}
			return { swept };
		},
	} satisfies InventoryMethods & ThisType<InventoryThis>,

	async started() {
		this.sweepStartedAt = Date.now();
		const { intervalMs } = this.settings.reservationSweep;
		if (!intervalMs) return;
		// One sweep at a time per node; other nodes are kept off the same reservation by the claim.
		const sweep = (staleAfterMs?: number) => {
			this.sweeping ??= this.sweepReservations(new Date(), staleAfterMs)
				.then(() => this.sweepParkedMoves(new Date(), staleAfterMs))
				.then(() => this.finishInterruptedCreations(staleAfterMs))
				.catch((err: Error) => this.logger.warn(`Sweeping stale reservations and stock movements failed: ${err.message}`))
				.finally(() => (this.sweeping = undefined));
			return this.sweeping;
		};
		// What a crash of the previous run left behind. Alone on the store (no transporter, or an embedded
		// store), no reserve or movement of another process can still be running: all of it, not only the
		// stale. Else a stock unit taken by a reserve that died would stay out for the stale window.
		await sweep(aloneOnItsStore(this.broker) ? 0 : undefined);
		this.sweepTimer = setInterval(() => sweep(), intervalMs);
		this.sweepTimer.unref();
	},

	async stopped() {
		clearInterval(this.sweepTimer);
		await this.sweeping;
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const InventoryMixin: Partial<ServiceSchema<any, any, any, any>> = inventorySchema;
