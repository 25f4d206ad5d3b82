/**
 * The promotion slots on the Mongo adapter, without a server: the mongoose schema keeps a slot as
 * given (a number for a limited code, a name for an unlimited use or a released order) and declares
 * the two unique indexes that make taking a use one atomic insert.
 */
import mongoose from "mongoose";
import { buildMongooseSchema } from "../../mixins/collection";
import { promotionUseCollections } from "../../mixins/promotion-uses.mixin";

const schema = buildMongooseSchema(promotionUseCollections.promotion_slots);
const Slots = mongoose.models.unit_promotion_slots ?? mongoose.model("unit_promotion_slots", schema, "promotion_slots");

describe("promotion slots on mongoose", () => {
	test("declares one use per (code, order) and one order per (code, slot)", () => {
		const unique = schema
			.indexes()
			.filter(([, opts]) => opts.unique)
			.map(([fields]) => fields);
		expect(unique).toEqual(expect.arrayContaining([{ promotionId: 1, orderId: 1 }, { promotionId: 1, slot: 1 }]));
	});

	test.each([3, 0, "order:o-1", "released:o-2"])("keeps the slot %p as given", (slot) => {
		const doc = new Slots({ promotionId: "p", orderId: "o", code: "SAVE", slot, createdAt: new Date() });
		expect(doc.validateSync()).toBeUndefined();
		expect(doc.slot).toBe(slot);
	});
});
