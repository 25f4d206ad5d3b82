import { Collection } from "../../mixins/collection";
import { absentOr } from "../../lib/store-queries";

describe("absentOr: a field not set (missing or null), or else matching a condition", () => {
	test("in the embedded store, a missing field and a null one both match; a set one only by the condition", async () => {
		const docs = new Collection("absent-or", { fields: {} }, {});
		await docs.connect();
		await docs.insertMany([{ id: "missing" }, { id: "null", at: null }, { id: "old", at: 1 }, { id: "new", at: 5 }]);
		const ids = async (query: Record<string, unknown>) => (await docs.find(query)).map((d) => d.id).sort();
		expect(await ids(absentOr("at"))).toEqual(["missing", "null"]);
		expect(await ids(absentOr("at", { $lt: 5 }))).toEqual(["missing", "null", "old"]);
		expect(await ids({ id: { $ne: "missing" }, ...absentOr("at", { $lte: 5 }) })).toEqual(["new", "null", "old"]);
		await docs.disconnect();
	});
});
