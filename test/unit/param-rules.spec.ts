import { expandRule, nullFieldsCheck } from "../../lib/param-rules";

describe("params schemas", () => {
	test.each([
		["string|min:3|optional", { type: "string", min: 3, optional: true }],
		["number", { type: "number" }],
		[{ a: "string" }, { type: "object", props: { a: "string" } }],
		[["string", "number"], { type: "multi", rules: ["string", "number"] }],
	])("expandRule(%j)", (rule, expected) => {
		expect(expandRule(rule)).toEqual(expected);
	});

	describe("null in a field that does not take it", () => {
		const schema = {
			$$strict: "remove",
			id: "string",
			name: { type: "string", optional: true },
			note: "string|optional",
			categoryId: { type: "string", optional: true, nullable: true },
			limit: { type: "number", optional: true, default: 10 },
			anything: { type: "any", optional: true },
			address: { type: "object", optional: true, props: { line1: { type: "string", optional: true }, line2: { type: "string", optional: true, nullable: true } } },
			variants: { type: "array", optional: true, items: { type: "object", props: { name: { type: "string", optional: true } } } },
		};
		const check = nullFieldsCheck(schema)!;
		const fields = (params: unknown) => check(params).map((p) => p.field);

		test.each([
			["an optional field", { id: "x", name: null }, ["name"]],
			["an optional field in shorthand", { id: "x", note: null }, ["note"]],
			["a nested optional field", { address: { line1: null, line2: null } }, ["address.line1"]],
			["a field of an array's item", { variants: [{ name: "a" }, { name: null }] }, ["variants[1].name"]],
			["several at once", { name: null, note: null }, ["name", "note"]],
		])("refused: %s", (_what, params, expected) => {
			expect(fields(params)).toEqual(expected);
		});

		test.each([
			["a nullable field", { categoryId: null }],
			["a field with a default (it replaces null)", { limit: null }],
			["an any field", { anything: null }],
			["a required field (the validator itself says it is required)", { id: null }],
			["an unknown field (the validator removes it)", { other: null }],
			["values given", { name: "n", address: { line1: "a" }, variants: [{ name: "v" }] }],
			["values of the wrong type (the validator's job)", { variants: "x", address: 5 }],
			["no params at all", undefined],
		])("let through: %s", (_what, params) => {
			expect(fields(params)).toEqual([]);
		});

		test("the problem names the field in the broker's validation shape", () => {
			expect(check({ name: null })).toEqual([{ type: "nullNotAllowed", field: "name", message: "The 'name' field cannot be null; leave it out instead.", actual: null }]);
		});

		test("a schema where nothing can be refused has no check", () => {
			expect(nullFieldsCheck({ id: "string", categoryId: { type: "string", optional: true, nullable: true } })).toBeNull();
		});
	});
});
