import { bodyShapeProblem, jsonItemsOver, queryShapeProblem, withoutSecrets, MAX_BODY_DEPTH } from "../../lib/request-shape";

const nested = (levels: number) => {
	let v: unknown = 1;
	for (let i = 0; i < levels; i++) v = { a: v };
	return v as Record<string, unknown>;
};

describe("queryShapeProblem", () => {
	test.each([
		[{}, null],
		[{ q: "lamp", page: "2" }, null],
		[{ q: "" }, null],
		[{ page: ["1", "2"] }, "page"],
		[{ q: "a", price: { $gt: "1" } }, "price"],
		[{ from: ["1"] }, "from"],
	])("%j → %s", (query, field) => {
		const problem = queryShapeProblem(query as Record<string, unknown>);
		if (field === null) expect(problem).toBeNull();
		else expect(problem).toEqual({ field, message: expect.stringContaining(`'${field}'`) });
	});
	test("no query at all", () => expect(queryShapeProblem(undefined)).toBeNull());

	test.each(["password", "currentPassword", "NewPassword", "token", "refreshToken", "clientSecret"])("a secret in the URL (%s) is refused, naming it", (name) => {
		expect(queryShapeProblem({ q: "a", [name]: "hunter2" })).toEqual({ field: name, message: expect.stringContaining("send it in the JSON body, never in the URL") });
	});
});

describe("withoutSecrets: a URL as the log shows it", () => {
	test.each([
		["/api/me", "/api/me"],
		["/api/products?pageSize=20&q=lamp", "/api/products?pageSize=20&q=lamp"],
		["/api/me?password=hunter2", "/api/me?password=***"],
		["/api/me?x=1&Password=hunter2&y=2", "/api/me?x=1&Password=***&y=2"],
		["/api/auth/verify-email?token=abc&token=def", "/api/auth/verify-email?token=***&token=***"],
		["/api/me?pass%77ord=hunter2", "/api/me?pass%77ord=***"],
		["/api/me?passwordHint=blue", "/api/me?passwordHint=blue"],
		["/api/me?password[]=hunter2", "/api/me?password[]=***"],
		["/api/me?password%5B%5D=hunter2&password[a]=x", "/api/me?password%5B%5D=***&password[a]=***"],
		["/api/me?%E0%A4%A=1&refreshToken=r", "/api/me?%E0%A4%A=1&refreshToken=***"],
		["/api/payments/test-authentication?clientSecret=pi_1_secret_2&outcome=failed", "/api/payments/test-authentication?clientSecret=***&outcome=failed"],
		// Other services' usual secret names, sent out of habit.
		["/api/products?access_token=LeakQ1&api_key=k2&apiKey=k3&q=lamp", "/api/products?access_token=***&api_key=***&apiKey=***&q=lamp"],
		["/api/products?keyword=lamp&signature=abc", "/api/products?keyword=lamp&signature=***"],
	])("%s → %s", (url, logged) => expect(withoutSecrets(url)).toBe(logged));
});

describe("bodyShapeProblem", () => {
	test.each([[[1, 2]], [42], ["x"], [true], [[{}]]])("%j is not an object", (body) => {
		expect(bodyShapeProblem(body)).toEqual({ message: "The body must be a JSON object" });
	});
	test.each([[null], [[]], [{}]])("%j is no body at all: fine", (body) => expect(bodyShapeProblem(body)).toBeNull());
	test("a shop body (a product with variants and options) passes", () => {
		expect(bodyShapeProblem({ name: "Lamp", variants: [{ sku: "L-1", options: { color: "red" } }], images: [] })).toBeNull();
	});
	test(`${MAX_BODY_DEPTH} levels pass, one more is refused, naming where`, () => {
		expect(bodyShapeProblem(nested(MAX_BODY_DEPTH))).toBeNull();
		expect(bodyShapeProblem(nested(MAX_BODY_DEPTH + 1))).toEqual({ field: Array(MAX_BODY_DEPTH).fill("a").join("."), message: expect.stringContaining("deeper") });
	});
	test("arrays count as levels and are named by index", () => {
		let v: unknown = [];
		for (let i = 0; i < MAX_BODY_DEPTH; i++) v = [v];
		expect(bodyShapeProblem({ list: v })).toMatchObject({ field: expect.stringMatching(/^list(\[0\])+$/) });
	});
	test("100,000 levels are refused without overflowing the stack", () => {
		const raw = `{"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
		expect(bodyShapeProblem(JSON.parse(raw))).toMatchObject({ message: expect.stringContaining("deeper") });
	});
	test("a property named __proto__ (as JSON.parse makes it), at any depth", () => {
		expect(bodyShapeProblem(JSON.parse('{"__proto__":{"role":"admin"}}'))).toEqual({ field: "__proto__", message: expect.any(String) });
		expect(bodyShapeProblem(JSON.parse('{"variants":[{"options":{"__proto__":{}}}]}'))).toMatchObject({ field: "variants[0].options.__proto__" });
		// Other names that objects inherit are plain data here.
		expect(bodyShapeProblem({ options: { constructor: "red", toString: "x" } })).toBeNull();
	});
	test("half of a surrogate pair, in a value or a name at any depth, is refused naming where; whole characters pass", () => {
		expect(bodyShapeProblem(JSON.parse('{"firstName":"Sur\\ud800"}'))).toEqual({ field: "firstName", message: expect.stringContaining("surrogate") });
		expect(bodyShapeProblem(JSON.parse('{"variants":[{"options":{"Size":"\\udc00L"}}]}'))).toMatchObject({ field: "variants[0].options.Size" });
		// A name is named with its half escaped, so the answer is well-formed text itself.
		expect(bodyShapeProblem(JSON.parse('{"options":{"\\ud83dx":"red"}}'))).toMatchObject({ field: "options.\\ud83dx" });
		expect(bodyShapeProblem(JSON.parse('{"title":"Great \\ud83d\\ude00 candle","body":"Ünïcödé ‮ is another rule\'s"}'))).toBeNull();
	});
});

describe("jsonItemsOver: properties and array elements counted in a JSON text's bytes", () => {
	const over = (text: string, limit: number) => jsonItemsOver(Buffer.from(text), limit);
	test.each([
		['{"a":1,"b":2,"c":3}', 3, false],
		['{"a":1,"b":2,"c":3}', 2, true],
		['{"a":[1,2,3],"b":{"c":1}}', 7, false],
		['{"a":[1,2,3],"b":{"c":1}}', 5, true],
		// Inside strings, commas, brackets and escaped quotes are text.
		['{"a":"x,y,[z],{w}"}                ', 1, false],
		['{"a":"say \\"hi, there\\", [ok]"}        ', 1, false],
		['{"a":"ends in a backslash \\\\","b":1,"c":2}', 2, true],
	])("%s over %p → %p", (text, limit, expected) => {
		expect(over(text, limit)).toBe(expected);
	});
	test("a text no longer than the limit is not read", () => {
		expect(over("[[[[[", 5)).toBe(false);
		expect(over("[[[[[[", 5)).toBe(true);
	});
});
