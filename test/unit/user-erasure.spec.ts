import { ERASURE_LEASE_MS, erasedUserFields, normalizeEmail, orderingRefusal } from "../../lib/user-records";

describe("erasedUserFields: what is left of a deleted account", () => {
	const now = new Date("2026-11-29T12:00:00Z");

	test("nothing that names the person; the password is one nothing matches, and sessions on it end", () => {
		const set = erasedUserFields({ id: "Ab-9_x", passwordVersion: 3 }, now, "$2b$12$unmatchable");
		expect(set).toEqual({
			email: "deleted-41622d395f78@deleted.invalid",
			firstName: null,
			lastName: null,
			phone: null,
			passwordHash: "$2b$12$unmatchable",
			passwordVersion: 4,
			isVerified: false,
			deletedAt: now,
			closingUntil: null,
			updatedAt: now,
		});
		expect(erasedUserFields({ id: "a" }, now, "h").passwordVersion).toBe(1);
	});

	test("the placeholder address is already in the stored form, and two ids differing in case never share one", () => {
		const upper = erasedUserFields({ id: "AbC" }, now, "h").email as string;
		const lower = erasedUserFields({ id: "abc" }, now, "h").email as string;
		expect(normalizeEmail(upper)).toBe(upper);
		expect(upper).not.toBe(lower);
		// A reserved top-level domain: no mail can reach it.
		expect(upper.endsWith(".invalid")).toBe(true);
	});
});

describe("orderingRefusal: no order for an account that is gone or being erased", () => {
	const now = new Date("2026-11-29T12:00:00Z");

	test("an account without marks may order; an unknown or erased one may not", () => {
		expect(orderingRefusal({}, now)).toBeNull();
		expect(orderingRefusal({ deletedAt: null, closingUntil: null }, now)).toBeNull();
		expect(orderingRefusal(null, now)).toBe("The account was deleted");
		expect(orderingRefusal({ deletedAt: new Date("2026-11-01T00:00:00Z") }, now)).toBe("The account was deleted");
	});

	test("an erasure under way holds orders off until its lease lapses", () => {
		expect(orderingRefusal({ closingUntil: new Date(now.getTime() + ERASURE_LEASE_MS) }, now)).toBe("The account is being deleted");
		// Stored and read back from a JSON answer or MongoDB: a string or a Date.
		expect(orderingRefusal({ closingUntil: new Date(now.getTime() + 1000).toISOString() }, now)).toBe("The account is being deleted");
		expect(orderingRefusal({ closingUntil: now }, now)).toBeNull();
		expect(orderingRefusal({ closingUntil: new Date(now.getTime() - 1) }, now)).toBeNull();
	});
});
