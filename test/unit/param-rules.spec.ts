import { Validators } from "moleculer";
import { charCount, expandRule, isoDateRule, maxChars, nullFieldsCheck, parseIsoDate, VALIDATOR_MESSAGES } from "../../lib/param-rules";

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

	describe("the shop's validator", () => {
		// As moleculer.config.ts sets it up (the broker's fastest-validator, with the shop's messages).
		const validator = new Validators.Fastest({ messages: VALIDATOR_MESSAGES });
		const problems = (schema: Record<string, any>, params: Record<string, unknown>) => {
			const result = validator.compile(schema)(params);
			return result === true ? [] : (result as unknown as Array<{ type: string; field: string; message: string; actual: unknown; expected: unknown }>);
		};

		test("an enum refusal names the field, the value given and the allowed values, in that order", () => {
			const [problem] = problems({ sort: { type: "enum", values: ["relevance", "price", "-price", "rating"] } }, { sort: "name" });
			expect(problem).toMatchObject({ type: "enumValue", field: "sort", actual: "name" });
			expect(problem.message).toBe("The 'sort' field value 'name' is not one of the allowed values: relevance, price, -price, rating.");
		});

		test.each([
			["ASCII", "abc", 3],
			["accents, precomposed", "Crème brûlée", 12],
			["emoji (two UTF-16 units each)", "👍🏽🎉", 3],
			["a CJK extension B character", "𠜎", 1],
			["empty", "", 0],
		])("charCount: %s", (_what, text, count) => {
			expect(charCount(text)).toBe(count);
		});

		const schema = { title: { type: "string", trim: true, optional: true, custom: maxChars(5) } };
		test.each([
			["5 emoji (10 UTF-16 units)", "🎉🎉🎉🎉🎉"],
			["5 letters", "abcde"],
			["5 letters, padded (trimmed first)", "  abcde  "],
			["absent", undefined],
		])("maxChars lets through %s", (_what, title) => {
			expect(problems(schema, title === undefined ? {} : { title })).toEqual([]);
		});

		test("maxChars refuses past the limit in characters, as the string rule's own max would say it", () => {
			expect(problems(schema, { title: "🎉🎉🎉🎉🎉🎉" })).toEqual([
				{ type: "stringMax", field: "title", expected: 5, actual: 6, message: "The 'title' field length must be less than or equal to 5 characters long." },
			]);
			expect(problems(schema, { title: "abcdef" })).toMatchObject([{ type: "stringMax", field: "title", actual: 6 }]);
			// Not a string: the type check's own refusal, not a length.
			expect(problems(schema, { title: 42 }).map((p) => p.type)).toEqual(["string"]);
		});
	});
});

describe("parseIsoDate / isoDateRule", () => {
	test.each([
		["2027-02-28", "2027-02-28T00:00:00.000Z"],
		["2028-02-29", "2028-02-29T00:00:00.000Z"],
		["2027-02-28T18:00Z", "2027-02-28T18:00:00.000Z"],
		["2027-02-28T18:00:05.123Z", "2027-02-28T18:00:05.123Z"],
		["2025-03-03T04:00:00+01:00", "2025-03-03T03:00:00.000Z"],
		["2025-03-03T00:00:00-05:30", "2025-03-03T05:30:00.000Z"],
		["+010000-01-01T00:00:00Z", "+010000-01-01T00:00:00.000Z"],
		["9999-12-31T23:59:59z", "9999-12-31T23:59:59.000Z"],
	])("%j is %s", (text, iso) => {
		expect(parseIsoDate(text)?.toISOString()).toBe(iso);
	});

	test.each([
		"2027-02-30", "2027-02-29", "2026-11-31", "2026-13-01", "2026-00-10", "2026-11-00",
		"2026-11-01T24:00:00Z", "2026-11-01T12:60Z", "2026-11-01T12:00:60Z", "2026-11-01T12:00:00+24:00",
		"2026-11-01T00:00", "2026-11-01 00:00Z", "March 1, 2026", "2026/11/01", "1798761600000", "", "+275761-01-01",
		// No year -0 (V8 read it as 2001 in the server's local time).
		"-000000-01-01", "-000000-01-01T00:00:00Z",
	])("%j is refused", (text) => {
		expect(parseIsoDate(text)).toBeUndefined();
	});

	test("as a params rule: a Date for the action, a 422 naming the field for anything else", () => {
		const check = new Validators.Fastest({ messages: VALIDATOR_MESSAGES }).compile({ from: isoDateRule({ optional: true }), until: isoDateRule({ optional: true, nullable: true }), $$strict: "remove" });
		const ok: Record<string, unknown> = { from: " 2027-02-28 ", until: null };
		expect(check(ok)).toBe(true);
		expect(ok).toEqual({ from: new Date("2027-02-28T00:00:00Z"), until: null });
		expect(check({})).toBe(true);
		const inProcess = { from: new Date("2027-02-28T18:00:00Z") };
		expect(check(inProcess)).toBe(true);
		expect(inProcess.from).toEqual(new Date("2027-02-28T18:00:00Z"));
		for (const from of ["2027-02-30", 1798761600000, "tomorrow", {}, new Date("nope")]) {
			expect(check({ from })).toEqual([
				expect.objectContaining({ field: "from", type: "isoDate", message: "The 'from' field must be an ISO 8601 date that exists, e.g. 2027-02-28 or 2027-02-28T18:00:00Z (a time needs its zone)." }),
			]);
		}
	});
});
