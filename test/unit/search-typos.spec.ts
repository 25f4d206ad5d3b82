import { adjacentSwaps, typoSwaps } from "../../lib/search-typos";

describe("adjacentSwaps", () => {
	test.each([
		["candle", ["acndle", "cnadle", "cadnle", "canlde", "candel"]],
		["mug", ["umg", "mgu"]],
		["ab", ["ba"]],
		["a", []],
		["", []],
		// A double letter swapped is the same word: not a variant.
		["mugg", ["umgg", "mgug"]],
		["aaa", []],
		["aba", ["baa", "aab"]],
		// Letters beyond the BMP stay whole.
		["a😀b", ["😀ab", "ab😀"]],
	])("%s → %j", (term, swaps) => {
		expect(adjacentSwaps(term)).toEqual(swaps);
	});

	test("every swap is one transposition away and none repeats", () => {
		for (const term of ["poster", "jacket", "headphones", "abab"]) {
			const swaps = adjacentSwaps(term);
			expect(new Set(swaps).size).toBe(swaps.length);
			for (const s of swaps) {
				const differ = [...s].flatMap((c, i) => (c === term[i] ? [] : [i]));
				expect({ s, differ: differ.length, adjacent: differ[1] - differ[0], sameLetters: [...s].sort().join("") }).toEqual({ s, differ: 2, adjacent: 1, sameLetters: [...term].sort().join("") });
			}
		}
	});
});

describe("typoSwaps", () => {
	test.each([
		// Too short for a typo: no swaps either ("mgu" is not "mug").
		["mgu", 0, []],
		// One edit allowed: a swap counts as that edit.
		["candel", 1, ["acndel", "cnadel", "cadnel", "canedl", "candle"]],
		// Two edits already cover a swap.
		["headphnoes", 2, []],
	])("%s with %i edit(s) → %j", (term, edits, swaps) => {
		expect(typoSwaps(term, edits)).toEqual(swaps);
	});
});
