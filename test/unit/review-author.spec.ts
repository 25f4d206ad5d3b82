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
	])("%j → %j", (user, expected) => {
		expect(reviewAuthorName(user)).toBe(expected);
	});
});
