/**
 * The uses of promotion codes, split out of services/cart.service.ts for size; only that service
 * uses it. A limited code's uses are numbered slots, each held by one order under a unique index
 * (see lowestFreeSlot in lib/promotions.ts): taking a use is one insert, and giving it back one
 * update that frees the slot and marks the order's record released. No crash or lost answer can
 * leave a use taken by nobody. The code's `usedCount` is a guide kept beside the slots; a crash
 * between the two writes leaves it one off, put right when the slots are next counted (withUses) and
 * at the start of a node alone on its store (repairUseCounters).
 *
 * The host declares `promotionUseCollections` and `promotions` in its DbMixin. List this mixin before
 * DbMixin: Moleculer starts mixins in reverse list order, so the move of older records runs once the
 * collections are open.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection, CollectionSpec } from "./collection";
import { aloneOnItsStore } from "./db.mixin";
import { ConflictError, isDuplicate } from "../lib/errors";
import { checkPromotion, lowestFreeSlot, normalizeCode, probeSlot, promoRejected, type Promotion } from "../lib/promotions";

/** How long a consumePromo keeps trying while other orders take the code's slots, and slots tried before a scan. */
const USE_WAIT_MS = 3000;
const SLOT_PROBES = 8;

export type PromotionDoc = Promotion & { id: string; createdAt: Date };
/** "exact": counted from the slots; "checked": counted only where the counter says the code is used up. */
export type UseCount = "checked" | "exact";

export const promotionUseCollections: Record<string, CollectionSpec> = {
	// One record per order that used a code, holding one of its numbered slots (see lowestFreeSlot;
	// an unlimited code's use holds a slot named after its order): taking a use and giving it back
	// are one write each, and idempotent per order. A record with `released` marks an order whose
	// use was given back (or refused before it was taken): it holds no numbered slot, and that order
	// takes no use again.
	promotion_slots: {
		fields: { promotionId: String, code: String, orderId: String, slot: Object, released: Boolean, createdAt: Date },
		indexes: [{ fields: { promotionId: 1, orderId: 1 }, unique: true }, { fields: { promotionId: 1, slot: 1 }, unique: true }, { fields: { promotionId: 1 } }],
	},
	// Before slots: one record per use ("pending", then "consumed"), moved to promotion_slots at start.
	promotion_uses: {
		fields: { promotionId: String, code: String, orderId: String, state: String, createdAt: Date },
		indexes: [{ fields: { promotionId: 1, orderId: 1 }, unique: true }],
	},
};

export interface PromotionUseMethods {
	findPromotion(code: string, uses?: UseCount): Promise<PromotionDoc | null>;
	freeSlot(promo: PromotionDoc, orderId: string, attempt: number): Promise<number | string | null>;
	useStillFits(promo: PromotionDoc, orderId: string): Promise<boolean>;
	heldUses(promotionId: string): Promise<Array<{ id: string; slot: unknown }>>;
	countHeldUses(promotionId: string): Promise<number>;
	packSlots(promotionId: string, maxUses: number): Promise<void>;
	withUses(promo: PromotionDoc | null, uses: UseCount): Promise<PromotionDoc | null>;
	repairUseCounters(): Promise<number>;
	setUseCounter(promo: PromotionDoc, usedCount: number): Promise<boolean>;
	moveLegacyUses(): Promise<void>;
}

interface PromotionUseVars {
	db: Record<"promotions" | "promotion_slots" | "promotion_uses", Collection>;
	/** Per used-up code, the counter value its slots were last counted at (see withUses). */
	countedUses: Map<string, number>;
}
type PromotionUseThis = Service & PromotionUseMethods & PromotionUseVars;

/** An order's use of a code: what consuming and releasing are called with. */
const useParams = { code: { type: "string", min: 1, max: 64 }, orderId: { type: "string", min: 1 } };

const promotionUseSchema: Partial<ServiceSchema<Record<string, never>, PromotionUseMethods, PromotionUseVars>> = {
	actions: {
		// ---- internal actions (docs/services.md § cart) ----

		consumePromo: {
			visibility: "public",
			params: useParams,
			async handler(ctx: Context<{ code: string; orderId: string }>) {
				const code = normalizeCode(ctx.params.code);
				const { orderId } = ctx.params;
				const deadline = Date.now() + USE_WAIT_MS;
				const lookAgain = () => {
					if (Date.now() > deadline) throw new ConflictError("Too many orders are taking this code's uses at once; try again", "PROMO_IN_PROGRESS");
				};
				for (let attempt = 0; ; attempt++) {
					const promo = await this.findPromotion(code);
					const held = promo && (await this.db.promotion_slots.findOne({ promotionId: promo.id, orderId }));
					if (held?.released) throw new ConflictError("This order's promotion use was already given back", "PROMO_RELEASED", { orderId });
					if (held) return { consumed: true, code };
					// The limit is the slots' to keep; the counter is not checked here (it may lag a crash).
					const verdict = checkPromotion(promo, { ignoreUseLimit: true });
					if (!verdict.ok) throw promoRejected(verdict);
					const slot = await this.freeSlot(promo!, orderId, attempt);
					if (slot === null) throw promoRejected({ ok: false, reason: "exhausted", message: "This promotion code has been used up" });
					try {
						await this.db.promotion_slots.insert({ promotionId: promo!.id, orderId, code, slot, createdAt: new Date() });
					} catch (err) {
						if (!isDuplicate(err)) throw err;
						// Another order took that slot, or another call of this order recorded its use: look again.
						lookAgain();
						continue;
					}
					// A limit changed since the code was read (an admin lowered it): the use must fit the new one.
					if (!(await this.useStillFits(promo!, orderId))) {
						lookAgain();
						continue;
					}
					// Only a guide for the next slot and for the cart's early "used up"; a crash before it leaves it one low.
					await this.db.promotions.updateOne({ id: promo!.id }, { $inc: { usedCount: 1 } });
					return { consumed: true, code };
				}
			},
		},

		releasePromo: {
			visibility: "public",
			params: useParams,
			async handler(ctx: Context<{ code: string; orderId: string }>) {
				const code = normalizeCode(ctx.params.code);
				const { orderId } = ctx.params;
				const promo = await this.findPromotion(code);
				if (!promo) return { released: false };
				// The order's record stays, marked, so the order can never take a use again (a late or repeated consume).
				const released = { released: true, slot: `released:${orderId}` };
				for (;;) {
					// Giving up the order's slot is the once-only gate: a second release finds nothing to give up.
					if (await this.db.promotion_slots.updateOne({ promotionId: promo.id, orderId, released: { $exists: false } }, { $set: released })) {
						await this.db.promotions.updateOne({ id: promo.id }, { $inc: { usedCount: -1 } });
						return { released: true };
					}
					try {
						// Nothing taken: a marker refuses this order's consume if it arrives late (its answer was lost in transit).
						await this.db.promotion_slots.insert({ promotionId: promo.id, orderId, code, ...released, createdAt: new Date() });
						return { released: false };
					} catch (err) {
						if (!isDuplicate(err)) throw err;
						// The marker is there already, or the use was recorded meanwhile: look again.
						if ((await this.db.promotion_slots.findOne({ promotionId: promo.id, orderId }))?.released) return { released: false };
					}
				}
			},
		},
	},

	methods: {
		/** The slot to try this order's use at: an order's own for an unlimited code; null when all are taken. */
		async freeSlot(promo: PromotionDoc, orderId: string, attempt: number): Promise<number | string | null> {
			if (promo.maxUses == null) return `order:${orderId}`;
			const probe = attempt < SLOT_PROBES ? probeSlot(promo.usedCount, attempt, promo.maxUses) : null;
			if (probe !== null) return probe;
			const held = await this.db.promotion_slots.find({ promotionId: promo.id }, { fields: ["slot"] });
			return lowestFreeSlot(held.map((h) => h.slot), promo.maxUses);
		},

		/**
		 * Whether the use just recorded for `orderId` still fits the code's limit. Only a limit changed
		 * since `promo` was read can make it not fit: a slot outside the new range, or more uses held
		 * than it allows. Then the use is taken back (unless packSlots moved it meanwhile) and false
		 * says to try again. Fewer discounts, never more.
		 */
		async useStillFits(promo: PromotionDoc, orderId: string): Promise<boolean> {
			const now = (await this.db.promotions.findOne({ id: promo.id })) as PromotionDoc | null;
			if (!now || now.maxUses == null || now.maxUses === promo.maxUses) return true;
			const mine = await this.db.promotion_slots.findOne({ promotionId: promo.id, orderId });
			if (!mine || mine.released) return true;
			const held = await this.heldUses(promo.id);
			if (typeof mine.slot === "number" && mine.slot < now.maxUses && held.length <= now.maxUses) return true;
			await this.db.promotion_slots.removeOne({ id: mine.id, slot: mine.slot, released: { $exists: false } });
			return false;
		},

		/** How many of the code's uses are held (not given back): the truth the counter is a guide to. */
		countHeldUses(promotionId: string) {
			return this.db.promotion_slots.count({ promotionId, released: { $exists: false } });
		},

		/** The code's uses still held (not given back). */
		async heldUses(promotionId: string) {
			return (await this.db.promotion_slots.find({ promotionId, released: { $exists: false } }, { fields: ["id", "slot"] })) as Array<{ id: string; slot: unknown }>;
		},

		/**
		 * After the limit changed to `maxUses`: every held use whose slot is outside 0..maxUses-1 (a
		 * higher slot of a lowered limit, or an unlimited code's per-order slot) moves into a free slot
		 * in range, so the slots keep counting every use and no free slot is handed out twice over the
		 * limit. Each move is one conditional update that the unique slot index guards.
		 */
		async packSlots(promotionId: string, maxUses: number) {
			const held = await this.heldUses(promotionId);
			const outside = held.filter((h) => typeof h.slot !== "number" || h.slot >= maxUses);
			if (!outside.length) return;
			const taken = new Set(held.map((h) => h.slot));
			for (const use of outside) {
				for (;;) {
					const slot = lowestFreeSlot(taken, maxUses);
					if (slot === null) return;
					taken.add(slot);
					try {
						await this.db.promotion_slots.updateOne({ id: use.id, slot: use.slot, released: { $exists: false } }, { $set: { slot } });
						break;
					} catch (err) {
						// Taken meanwhile by a new use: the next free one.
						if (!isDuplicate(err)) throw err;
					}
				}
			}
		},

		/**
		 * The code with its use count counted from the slots: "exact" always (an admin view), "checked"
		 * only where the counter says it is used up. The counter is a guide that a crash can leave one
		 * off: one low is harmless (consuming checks the slots), one high would refuse a free use.
		 */
		async withUses(promo: PromotionDoc | null, uses: UseCount): Promise<PromotionDoc | null> {
			if (!promo || (uses === "checked" && (promo.maxUses == null || promo.usedCount < promo.maxUses))) return promo;
			// A used-up code stays in carts: its count is taken once per counter value, not on every cart view.
			if (uses === "checked" && this.countedUses.get(promo.id) === promo.usedCount) return promo;
			const usedCount = await this.countHeldUses(promo.id);
			const repaired = await this.setUseCounter(promo, usedCount);
			// Not high: until the counter moves (from where it was put), it says "used up" rightly.
			if (usedCount >= promo.usedCount) this.countedUses.set(promo.id, repaired ? usedCount : promo.usedCount);
			return { ...promo, usedCount };
		},

		/**
		 * The counter of each code set to its slots' count where a crash left it off: at the start of a
		 * node alone on its store, where no use is half-taken by another process. Returns the codes put right.
		 */
		async repairUseCounters() {
			let repaired = 0;
			for (const promo of (await this.db.promotions.find({})) as PromotionDoc[]) {
				const usedCount = await this.countHeldUses(promo.id);
				if (await this.setUseCounter(promo, usedCount)) repaired++;
			}
			return repaired;
		},

		/**
		 * The counter set to `usedCount` counted from the slots, unless it moved since `promo` was read.
		 * A use or release cut short between its two writes left it one low or one high. A use taken
		 * between the count and this write can leave it one off again; the next count puts it right.
		 */
		async setUseCounter(promo: PromotionDoc, usedCount: number) {
			if (usedCount === promo.usedCount) return false;
			return !!(await this.db.promotions.updateOne({ id: promo.id, usedCount: promo.usedCount }, { $set: { usedCount } }));
		},

		/**
		 * Uses recorded before slots move to promotion_slots, oldest first, each given the lowest free
		 * slot (a lowered limit may leave some past it: they count, and free nothing). A "pending" one
		 * may have been counted before a crash, so it is kept: fewer discounts, never more. Safe to
		 * repeat, and on several nodes at once.
		 */
		async moveLegacyUses() {
			const legacy = await this.db.promotion_uses.find({}, { sort: { createdAt: 1 } });
			const byPromotion = new Map<string, typeof legacy>();
			for (const use of legacy) byPromotion.set(use.promotionId, [...(byPromotion.get(use.promotionId) ?? []), use]);
			for (const [promotionId, uses] of byPromotion) {
				const promo = (await this.db.promotions.findOne({ id: promotionId })) as PromotionDoc | null;
				const held = new Set((await this.db.promotion_slots.find({ promotionId }, { fields: ["slot"] })).map((h) => h.slot));
				let next = 0;
				for (const use of uses) {
					while (promo) {
						while (held.has(next)) next++;
						const slot = promo.maxUses == null ? `order:${use.orderId}` : next;
						held.add(slot);
						try {
							await this.db.promotion_slots.insert({ promotionId, orderId: use.orderId, code: promo.code, slot, createdAt: use.createdAt });
							break;
						} catch (err) {
							if (!isDuplicate(err)) throw err;
							if (await this.db.promotion_slots.findOne({ promotionId, orderId: use.orderId })) break;
						}
					}
					await this.db.promotion_uses.removeOne({ id: use.id });
				}
			}
		},

		/** The code as stored; with `uses`, its use count checked as `withUses` does. */
		async findPromotion(code: string, uses?: UseCount) {
			const promo = (await this.db.promotions.findOne({ code })) as PromotionDoc | null;
			return uses ? this.withUses(promo, uses) : promo;
		},
	} satisfies PromotionUseMethods & ThisType<PromotionUseThis>,

	created() {
		this.countedUses = new Map();
	},

	events: {
		// Alone on the store, no use is half-taken by another process: a counter off by one is this node's crash.
		async "$broker.started"(this: PromotionUseThis) {
			if (!aloneOnItsStore(this.broker)) return;
			const repaired = await this.repairUseCounters().catch((err: Error) => this.logger.error("Repairing promotion use counters failed:", err));
			if (repaired) this.logger.info(`Use counters of ${repaired} promotion code(s) left off by a crash were put right from their uses`);
		},
	},

	async started() {
		await this.moveLegacyUses();
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const PromotionUseMixin: Partial<ServiceSchema<any, any, any, any>> = promotionUseSchema;
