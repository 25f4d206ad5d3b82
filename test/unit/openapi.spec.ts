import { ruleToSchema, objectSchema, buildOpenApi } from "../../lib/openapi";

describe("fastest-validator rules → OpenAPI schemas", () => {
	test.each([
		["string|min:3|optional", { type: "string", minLength: 3 }],
		[{ type: "email" }, { type: "string", format: "email" }],
		[{ type: "number", integer: true, min: 1, max: 99 }, { type: "integer", minimum: 1, maximum: 99 }],
		[{ type: "number", positive: true }, { type: "number", minimum: 0, exclusiveMinimum: true }],
		[{ type: "enum", values: ["a", "b"] }, { enum: ["a", "b"] }],
		[{ type: "array", items: "string", max: 5 }, { type: "array", items: { type: "string" }, maxItems: 5 }],
		[{ type: "record", value: "number" }, { type: "object", additionalProperties: { type: "number" } }],
		[{ type: "boolean", default: false }, { type: "boolean", default: false }],
	])("%j", (rule, schema) => expect(ruleToSchema(rule)).toEqual(schema));

	test("required lists only mandatory props; $$ keys and forbidden props are left out", () => {
		expect(objectSchema({ $$strict: "remove", a: "string", b: { type: "string", optional: true }, c: { type: "forbidden" } })).toEqual({
			type: "object",
			properties: { a: { type: "string" }, b: { type: "string" } },
			required: ["a"],
		});
	});

	test("path params, query params, bodies and security", () => {
		const doc = buildOpenApi(
			[
				{ method: "GET", path: "/api/things/:id", params: { id: "string", expand: { type: "boolean", optional: true } } },
				{ method: "POST", path: "/api/things", params: { name: "string" }, roles: ["admin"] },
				{ method: "GET", path: "/api/cart", auth: "optional" },
			],
			{ title: "t", version: "1" },
		);
		const get = doc.paths["/api/things/{id}"].get;
		expect(get.parameters).toEqual([
			{ name: "id", in: "path", required: true, schema: { type: "string" } },
			{ name: "expand", in: "query", required: false, schema: { type: "boolean" } },
		]);
		expect(doc.paths["/api/things"].post.requestBody.content["application/json"].schema.required).toEqual(["name"]);
		expect(doc.paths["/api/things"].post.security).toEqual([{ bearerAuth: [] }]);
		expect(doc.paths["/api/things"].post.responses["403"]).toBeDefined();
		expect(doc.paths["/api/cart"].get.security).toEqual([{}, { bearerAuth: [] }]);
	});
});
