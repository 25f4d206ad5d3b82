import { emailProblem, normalizeEmail } from "../../lib/user-records";

describe("normalizeEmail: one stored form per address", () => {
	test.each([
		["  Ann@Example.COM ", "ann@example.com"],
		["ａdmin@example.com", "admin@example.com"],
		["jose\u0301@example.com", "jos\u00e9@example.com"],
		["jos\u00e9@example.com", "jos\u00e9@example.com"],
	])("%j → %j", (input, stored) => expect(normalizeEmail(input)).toBe(stored));
});

describe("emailProblem: addresses that would pass for another one", () => {
	test.each([
		"ann@example.com",
		"first.last+tag@sub.example.co.uk",
		"jos\u00e9@example.com",
		"jose\u0301@example.com",
		// One alphabet throughout is an address like any other.
		"\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
		"\u03b1\u03bb\u03ad\u03be\u03b7\u03c2@example.com",
	])("%j is fine", (email) => expect(emailProblem(email)).toBeNull());

	test.each([
		["admin\u200b@example.com", "invisible"],
		["\u200dann@example.com", "invisible"],
		["ann\u0007@example.com", "invisible"],
		["\u0430dmin@example.com", "alphabets"],
		["admin@ex\u0430mple.com", "alphabets"],
		["p\u03b1ypal@example.com", "alphabets"],
		["ADM\u0130N@example.com", "accent"],
		// Quoted local parts are valid addresses (RFC 5321) but not taken; a space in one is no invisible character.
		['"quoted local"@example.com', "quoted"],
		['"ann"@example.com', "quoted"],
	])("%j is refused (%s)", (email, why) => expect(emailProblem(email)).toContain(why));

	test("a quoted local part is not called invisible or control characters", () => {
		expect(emailProblem('"quoted local"@example.com')).not.toContain("invisible");
	});
});
