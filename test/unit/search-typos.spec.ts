import { adjacentSwaps, doubleSwaps, typoLookups } from "../../lib/search-typos";

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

describe("typoLookups", () => {
	test("too short for a typo: no swaps either (\"mgu\" is not \"mug\")", () => {
		expect(typoLookups("mgu", 0)).toEqual({ swaps: [], swapEdits: 0, doubleSwaps: [] });
	});
	test("one edit allowed: a swap counts as that edit", () => {
		expect(typoLookups("candel", 1)).toEqual({ swaps: ["acndel", "cnadel", "cadnel", "canedl", "candle"], swapEdits: 0, doubleSwaps: [] });
	});
	test("two edits allowed: a swap and one more typo, or two swaps", () => {
		const { swaps, swapEdits, doubleSwaps: twice } = typoLookups("mesegner", 2);
		expect(swapEdits).toBe(1);
		// "mesegner" → "mesenger" (a swap), one insertion from "messenger".
		expect(swaps).toContain("mesenger");
		expect(typoLookups("bcakpakc", 2).doubleSwaps).toContain("backpack");
		expect(twice).not.toContain("mesegner");
	});
});

describe("doubleSwaps", () => {
	test("two swaps that do not touch, each word once, never the word itself", () => {
		expect(doubleSwaps("abcd")).toEqual(["badc"]);
		expect(doubleSwaps("abcde").sort()).toEqual(["acbed", "baced", "badce"]);
		for (const word of ["backpack", "headphones", "aabbcc"]) {
			const out = doubleSwaps(word);
			expect(new Set(out).size).toBe(out.length);
			expect(out).not.toContain(word);
		}
		// Only doubled letters: nothing to swap.
		expect(doubleSwaps("aaaa")).toEqual([]);
	});
});
