import { isIssuedCartId, issueCartId } from "../../lib/cart-id";

describe("guest cart ids", () => {
	const secret = "one-shop-secret";

	test("an issued id is taken back, and each one is new", () => {
		const id = issueCartId(secret);
		expect(id).toMatch(/^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{16}$/);
		expect(isIssuedCartId(id, secret)).toBe(true);
		expect(issueCartId(secret)).not.toBe(id);
	});

	test.each([
		["an id of the client's choosing", "AAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAA"],
		["the old unsigned form", "AAAAAAAAAAAAAAAAAAAAAAAA"],
		["a path", "../../etc/passwd"],
		["empty", ""],
		["not a string", 42],
	])("refused: %s", (_what, id) => {
		expect(isIssuedCartId(id, secret)).toBe(false);
	});

	test("an id issued under another secret, or with its random part changed, is refused", () => {
		const id = issueCartId(secret);
		expect(isIssuedCartId(id, "another-secret")).toBe(false);
		const [random, tag] = id.split(".");
		const flipped = (random[0] === "A" ? "B" : "A") + random.slice(1);
		expect(isIssuedCartId(`${flipped}.${tag}`, secret)).toBe(false);
	});
});
