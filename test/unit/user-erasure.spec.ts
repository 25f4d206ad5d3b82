import { erasedUserFields, normalizeEmail } from "../../lib/user-records";

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
