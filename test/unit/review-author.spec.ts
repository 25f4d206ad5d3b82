import { reviewAuthorName } from "../../lib/review-author";

describe("a review's author in public", () => {
	test.each([
		[{ firstName: "Bea", lastName: "Smith" }, "Bea S."],
		[{ firstName: "  Bea ", lastName: " smith" }, "Bea S."],
		[{ firstName: "Bea", lastName: null }, "Bea"],
		[{ firstName: "Bea", lastName: "" }, "Bea"],
		[{ firstName: "Zoë", lastName: "Łukasiewicz" }, "Zoë Ł."],
		[{ firstName: "Ana", lastName: "𝒮mith" }, "Ana 𝒮."],
		[{ firstName: null, lastName: "Smith" }, null],
		[{ firstName: "   ", lastName: "Smith" }, null],
		[null, null],
		// Names stored before they were refused: what would reorder the line or is no character goes.
		[{ firstName: "Eve\u202Egnp.exe", lastName: "\udc00Doe" }, "Evegnp.exe D."],
		[{ firstName: "\u2066\u2069", lastName: "Doe" }, null],
		[{ firstName: "Bea\u0007", lastName: "\u202E" }, "Bea"],
		// The initial is the first letter: not a zero-width or direction mark before it, nor a lone accent.
		[{ firstName: "Ann", lastName: "\u200Bx" }, "Ann X."],
		[{ firstName: "Ann", lastName: "\u200F\u200E" }, "Ann"],
		[{ firstName: "Ann", lastName: "'O\u0301neil" }, "Ann Ó."],
	])("%j → %j", (user, expected) => {
		expect(reviewAuthorName(user)).toBe(expected);
	});
});
