import SwaggerParser from "@apidevtools/swagger-parser";
import { ruleToSchema, objectSchema, buildOpenApi, pageSchema, responseSchema, type RouteInfo } from "../../lib/openapi";
import { RESPONSE_SCHEMAS } from "../../lib/openapi-schemas";
import { maxChars } from "../../lib/param-rules";

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
		// A limit in characters checked by `custom` is the document's maxLength (which counts characters too).
		[{ type: "string", optional: true, custom: maxChars(120) }, { type: "string", maxLength: 120 }],
		[{ type: "string", pattern: /^[A-Z]+$/ }, { type: "string", pattern: "^[A-Z]+$" }],
		// A Unicode-mode pattern reads otherwise in the document's dialect (\p as "p"): left out.
		[{ type: "string", pattern: /^[^\p{Cc}]*$/u }, { type: "string" }],
		// null taken (a promotion's `maxUses: null` is no limit): the document says so.
		[{ type: "number", integer: true, min: 1, optional: true, nullable: true }, { type: "integer", minimum: 1, nullable: true }],
		[{ type: "string", enum: ["a"], nullable: true }, { type: "string", enum: ["a", null], nullable: true }],
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
				{ method: "POST", path: "/api/things/:id/cancel", params: { id: "string", reason: { type: "string", optional: true } } },
				{ method: "GET", path: "/api/cart", auth: "optional" },
			],
			{ title: "t", version: "1" },
		);
		// A body of optional fields only may be left out.
		expect(doc.paths["/api/things"].post.requestBody.required).toBe(true);
		expect(doc.paths["/api/things/{id}/cancel"].post.requestBody.required).toBe(false);
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

	test("a GET's 200 carries an ETag and may be a 304 (the gateway's revalidation); other methods neither", () => {
		const doc = buildOpenApi(
			[
				{ method: "GET", path: "/api/things/:id" },
				{ method: "POST", path: "/api/things", openapi: { success: 201 } },
			],
			{ title: "t", version: "1" },
		);
		const get = doc.paths["/api/things/{id}"].get.responses;
		expect(Object.keys(get["200"].headers)).toEqual(["ETag"]);
		expect(get["304"]).toMatchObject({ description: expect.stringContaining("If-None-Match"), headers: { ETag: { schema: { type: "string" } } } });
		const post = doc.paths["/api/things"].post.responses;
		expect(post["304"]).toBeUndefined();
		expect(post["201"].headers).toBeUndefined();
	});
});

describe("what actions declare with `openapi`", () => {
	const docOf = (routes: RouteInfo[]) => buildOpenApi(routes, { title: "t", version: "1" });
	const opOf = (route: RouteInfo) => {
		const doc = docOf([route]);
		return Object.values(doc.paths)[0][route.method.toLowerCase()];
	};
	const successes = (op: any) => Object.keys(op.responses).filter((status) => Number(status) < 300);

	test.each<[string, RouteInfo, string[]]>([
		["a POST without a note answers 200, as moleculer-web does", { method: "POST", path: "/api/auth/login" }, ["200"]],
		["a GET answers 200", { method: "GET", path: "/api/me" }, ["200"]],
		["success: 201", { method: "POST", path: "/api/things", openapi: { success: 201 } }, ["201"]],
		["success: 202", { method: "POST", path: "/api/auth/password-reset", openapi: { success: 202 } }, ["202"]],
		["success: 204", { method: "DELETE", path: "/api/cart", openapi: { success: 204 } }, ["204"]],
		["a 2xx in responses is another success", { method: "POST", path: "/api/orders", openapi: { success: 201, responses: { 200: "Replay" } } }, ["200", "201"]],
	])("%s", (_name, route, expected) => {
		expect(successes(opOf(route))).toEqual(expected);
	});

	test("204 carries no content; other successes do", () => {
		expect(opOf({ method: "DELETE", path: "/api/cart", openapi: { success: 204 } }).responses["204"]).toEqual({ description: "No content" });
		expect(opOf({ method: "POST", path: "/api/x", openapi: { success: 202 } }).responses["202"].content["application/json"]).toBeDefined();
		expect(opOf({ method: "POST", path: "/api/orders", openapi: { success: 201, responses: { 200: "Replay" } } }).responses["200"]).toEqual({
			description: "Replay",
			content: { "application/json": { schema: {} } },
		});
	});

	test.each<[string, RouteInfo, Record<string, string>]>([
		["declared errors are added", { method: "POST", path: "/api/orders", openapi: { responses: { 402: "Payment declined", 409: "Stock short" } } }, { "402": "Payment declined", "409": "Stock short" }],
		["a declared status replaces the generic description", { method: "GET", path: "/api/x/:id", openapi: { responses: { 404: "Unknown x" } } }, { "404": "Unknown x" }],
		["401 on a route without auth", { method: "POST", path: "/api/auth/login", openapi: { responses: { 401: "Wrong password" } } }, { "401": "Wrong password" }],
	])("%s", (_name, route, expected) => {
		const responses = opOf(route).responses;
		for (const [status, description] of Object.entries(expected)) {
			expect(responses[status]).toEqual({ description, content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } });
		}
	});

	test("without a note, only the generic errors", () => {
		expect(Object.keys(opOf({ method: "POST", path: "/api/x" }).responses)).toEqual(["200", "400", "413", "415", "422", "429", "503"]);
	});

	test.each<[string, RouteInfo, unknown[]]>([
		[
			"a required header",
			{ method: "POST", path: "/api/orders", openapi: { headers: { "Idempotency-Key": { required: true, description: "One checkout per key" } } } },
			[{ name: "Idempotency-Key", in: "header", required: true, description: "One checkout per key", schema: { type: "string" } }],
		],
		[
			"an optional header, after the path parameters",
			{ method: "POST", path: "/api/orders/:id/refund", openapi: { headers: { "Idempotency-Key": { description: "Refunds once" } } } },
			[
				{ name: "id", in: "path", required: true, schema: { type: "string" } },
				{ name: "Idempotency-Key", in: "header", required: false, description: "Refunds once", schema: { type: "string" } },
			],
		],
		["no header without a note", { method: "POST", path: "/api/orders" }, undefined as any],
	])("%s", (_name, route, expected) => {
		expect(opOf(route).parameters).toEqual(expected);
	});
});

describe("path keys: one per shape", () => {
	const products: RouteInfo[] = [
		{ method: "GET", path: "/api/products/:idOrSlug", params: { idOrSlug: { type: "string", min: 1 } } },
		{ method: "PATCH", path: "/api/products/:id", params: { id: "string", name: { type: "string", optional: true } } },
		{ method: "DELETE", path: "/api/products/:id", params: { id: "string" } },
		{ method: "GET", path: "/api/products/:id/reviews", params: { id: "string" } },
	];

	test.each<[string, RouteInfo[], string[]]>([
		["names that differ only by parameter name share one key, named as most routes name it", products, ["/api/products/{id}", "/api/products/{id}/reviews"]],
		[
			"each position on its own",
			[
				{ method: "GET", path: "/api/a/:x/b/:p" },
				{ method: "PATCH", path: "/api/a/:y/b/:q" },
				{ method: "DELETE", path: "/api/a/:y/b/:p" },
			],
			["/api/a/{y}/b/{p}"],
		],
		["on a tie, the name of the first route by path", [{ method: "PATCH", path: "/api/a/:y" }, { method: "GET", path: "/api/a/:x" }], ["/api/a/{x}"]],
		["a literal segment is not a parameter", [{ method: "GET", path: "/api/things/:id" }, { method: "GET", path: "/api/things/new" }], ["/api/things/new", "/api/things/{id}"]],
	])("%s", (_name, routes, keys) => {
		const doc = buildOpenApi(routes, { title: "t", version: "1" });
		expect(Object.keys(doc.paths).sort()).toEqual([...keys].sort());
		// Never two keys of one shape (OpenAPI 3 forbids them).
		const shapes = Object.keys(doc.paths).map((p) => p.replace(/\{[^}]+\}/g, "{}"));
		expect(new Set(shapes).size).toBe(shapes.length);
	});

	test("each operation names the parameter as the key does, describes a renamed one, and keeps its own schema", () => {
		const doc = buildOpenApi(products, { title: "t", version: "1" });
		const item = doc.paths["/api/products/{id}"];
		expect(Object.keys(item).sort()).toEqual(["delete", "get", "patch"]);
		expect(item.get.parameters).toEqual([{ name: "id", in: "path", required: true, description: "id or slug", schema: { type: "string", minLength: 1 } }]);
		expect(item.patch.parameters).toEqual([{ name: "id", in: "path", required: true, schema: { type: "string" } }]);
		// The renamed parameter is still a path parameter, not a query one.
		expect(item.get.parameters.some((p: any) => p.in === "query")).toBe(false);
		expect(item.patch.requestBody.content["application/json"].schema.properties).toEqual({ name: { type: "string" } });
		expect(new Set(Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((op: any) => op.operationId))).size).toBe(4);
	});

	test("of two aliases with one method and shape, the first given is documented (the gateway serves that one)", () => {
		const doc = buildOpenApi(
			[
				{ method: "GET", path: "/api/x/:slug", action: "x.bySlug" },
				{ method: "GET", path: "/api/x/:id", action: "x.byId" },
			],
			{ title: "t", version: "1" },
		);
		expect(Object.keys(doc.paths)).toEqual(["/api/x/{slug}"]);
		expect(doc.paths["/api/x/{slug}"].get.summary).toBe("x.bySlug");
	});
});

describe("response bodies (`openapi.response`)", () => {
	const docOf = (routes: RouteInfo[]) => buildOpenApi(routes, { title: "t", version: "1" });
	const schemaOf = (op: any, status: string) => op.responses[status].content?.["application/json"].schema;
	const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

	test("a named schema is a reference to its component, and every component is in the document", () => {
		const doc = docOf([{ method: "GET", path: "/api/cart", openapi: { response: "Cart" } }]);
		expect(schemaOf(doc.paths["/api/cart"].get, "200")).toEqual(ref("Cart"));
		expect(Object.keys(doc.components.schemas)).toEqual(["Error", ...Object.keys(RESPONSE_SCHEMAS)]);
		expect(doc.components.schemas.Cart).toEqual(RESPONSE_SCHEMAS.Cart);
	});

	test("a refusal with a body of its own (the health check's 503) names that body; other refusals keep the error shape", () => {
		const doc = docOf([{ method: "GET", path: "/api/health", openapi: { response: "Health", errorBodies: { 503: { schema: "Health", description: "Starting or stopping" } } } }]);
		const op = doc.paths["/api/health"].get;
		expect(op.responses["503"]).toEqual({ description: "Starting or stopping", content: { "application/json": { schema: ref("Health") } } });
		expect(schemaOf(op, "429")).toEqual(ref("Error"));
	});

	test("a list is the page envelope around the item, as a component of its own, only when some route uses it", () => {
		const doc = docOf([{ method: "GET", path: "/api/orders", openapi: { response: { list: "Order" } } }]);
		expect(schemaOf(doc.paths["/api/orders"].get, "200")).toEqual(ref("OrderPage"));
		expect(doc.components.schemas.OrderPage).toEqual({ description: "A page of Order", ...pageSchema(ref("Order")) });
		expect(doc.components.schemas.ReviewPage).toBeUndefined();
		expect(pageSchema({ type: "string" })).toEqual({
			type: "object",
			properties: {
				rows: { type: "array", items: { type: "string" } },
				total: { type: "integer", minimum: 0 },
				page: { type: "integer", minimum: 1 },
				pageSize: { type: "integer", minimum: 1 },
				totalPages: { type: "integer", minimum: 0 },
			},
			required: ["rows", "total", "page", "pageSize", "totalPages"],
			additionalProperties: false,
		});
	});

	test("every success but a 204 carries the body: the declared status and the 2xx in `responses`", () => {
		const op = Object.values(docOf([{ method: "POST", path: "/api/orders", openapi: { success: 201, response: "Order", responses: { 200: "Replay", 409: "Conflict" } } }]).paths)[0].post;
		expect(schemaOf(op, "201")).toEqual(ref("Order"));
		expect(op.responses["200"]).toEqual({ description: "Replay", content: { "application/json": { schema: ref("Order") } } });
		expect(schemaOf(op, "409")).toEqual(ref("Error"));
		const deleted = Object.values(docOf([{ method: "DELETE", path: "/api/x", openapi: { success: 204, response: "Cart" } }]).paths)[0].delete;
		expect(deleted.responses["204"]).toEqual({ description: "No content" });
	});

	test("without a response, the body is undescribed (the integration suite refuses that for the shop's routes)", () => {
		expect(schemaOf(Object.values(docOf([{ method: "GET", path: "/api/x" }]).paths)[0].get, "200")).toEqual({});
		expect(responseSchema(undefined)).toEqual({});
	});

	test("an unknown schema name is an error, not an empty schema", () => {
		expect(() => responseSchema("Nope" as any)).toThrow(/Unknown response schema "Nope"/);
		expect(() => responseSchema({ list: "toString" } as any)).toThrow(/Unknown response schema/);
		expect(() => docOf([{ method: "GET", path: "/api/x", openapi: { response: "Carts" as any } }])).toThrow(/Carts/);
	});

	test("the document does not share its schema objects with the module (a consumer may dereference it in place)", () => {
		const doc = docOf([{ method: "GET", path: "/api/cart", openapi: { response: "Cart" } }]);
		(doc.components.schemas.Cart as any).properties.items = "changed";
		expect((RESPONSE_SCHEMAS.Cart as any).properties.items).not.toBe("changed");
	});

	test("every reference in the schemas names a schema, and a document using them all is valid OpenAPI 3.0", async () => {
		const names = Object.keys(RESPONSE_SCHEMAS);
		const refs = [...JSON.stringify(RESPONSE_SCHEMAS).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
		expect(refs.filter((name) => !names.includes(name))).toEqual([]);
		const doc = docOf(names.flatMap((name) => [
			{ method: "GET", path: `/api/one/${name}`, openapi: { response: name as any } },
			{ method: "GET", path: `/api/list/${name}`, openapi: { response: { list: name as any } } },
		]));
		await expect(SwaggerParser.validate(doc as any)).resolves.toBeDefined();
	});
});
