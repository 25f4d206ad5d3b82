import { ResponseCache } from "../../lib/response-cache";

const body = (s: string) => Buffer.from(s);

describe("ResponseCache", () => {
	let clock = 0;
	const cache = (maxEntries = 3, maxAgeMs = 1000) => new ResponseCache({ maxEntries, maxAgeMs, now: () => clock });
	beforeEach(() => (clock = 0));

	test("serves a stored answer until it expires", () => {
		const c = cache();
		c.set("GET /api/products", body("a"), "products", c.generation("products"));
		clock = 999;
		expect(c.get("GET /api/products")?.toString()).toBe("a");
		clock = 1000;
		expect(c.get("GET /api/products")).toBeUndefined();
		expect(c.size).toBe(0);
	});

	test("a clean of the service drops its answers and leaves the others", () => {
		const c = cache();
		c.set("p1", body("p1"), "products", 0);
		c.set("p2", body("p2"), "products", 0);
		c.set("s1", body("s1"), "search", 0);
		c.clean("products");
		expect([c.get("p1"), c.get("p2"), c.get("s1")?.toString()]).toEqual([undefined, undefined, "s1"]);
	});

	test("an answer computed across a clean is not stored: it may predate the change", () => {
		const c = cache();
		const before = c.generation("products");
		c.clean("products");
		c.set("p1", body("old"), "products", before);
		expect(c.get("p1")).toBeUndefined();
		c.set("p1", body("new"), "products", c.generation("products"));
		expect(c.get("p1")?.toString()).toBe("new");
	});

	test("holds at most maxEntries, dropping the oldest", () => {
		const c = cache(2);
		c.set("a", body("a"), "t", 0);
		c.set("b", body("b"), "t", 0);
		c.set("c", body("c"), "t", 0);
		expect([c.get("a"), c.get("b")?.toString(), c.get("c")?.toString()]).toEqual([undefined, "b", "c"]);
		expect(c.size).toBe(2);
	});

	test("maxEntries 0 turns it off", () => {
		const c = cache(0);
		c.set("a", body("a"), "t", 0);
		expect(c.get("a")).toBeUndefined();
	});
});
