/**
 * Typo tolerance that plain Levenshtein matching (minisearch) lacks. Swapping two neighbouring
 * letters ("candel" for "candle") is the most common typo; Elasticsearch counts it as one edit
 * (`fuzzy_transpositions`), Levenshtein as two, more than a short word is allowed. So a word
 * allowed edits is also looked up as each of its swaps (typoLookups).
 */

/** Every distinct word made by swapping two neighbouring letters of `term`, left to right, never `term` itself. */
export function adjacentSwaps(term: string): string[] {
	// Code points, not UTF-16 units: swapping half of a surrogate pair would make a word no one can type.
	const letters = Array.from(term);
	const swaps: string[] = [];
	for (let i = 0; i + 1 < letters.length; i++) {
		// Swapping a double letter gives the word back.
		if (letters[i] === letters[i + 1]) continue;
		const swapped = letters.slice();
		[swapped[i], swapped[i + 1]] = [letters[i + 1], letters[i]];
		// Different positions of different letters never give the same word, so no duplicates.
		swaps.push(swapped.join(""));
	}
	return swaps;
}

/**
 * Every distinct word made by two swaps of neighbouring letters that do not touch ("bcakpakc" for
 * "backpack"): two edits to Elasticsearch, four to Levenshtein. Overlapping swaps move one letter
 * two places, which Levenshtein already counts as two.
 */
export function doubleSwaps(term: string): string[] {
	const letters = Array.from(term);
	const out = new Set<string>();
	for (let i = 0; i + 1 < letters.length; i++) {
		if (letters[i] === letters[i + 1]) continue;
		for (let j = i + 2; j + 1 < letters.length; j++) {
			if (letters[j] === letters[j + 1]) continue;
			const swapped = letters.slice();
			[swapped[i], swapped[i + 1]] = [letters[i + 1], letters[i]];
			[swapped[j], swapped[j + 1]] = [letters[j + 1], letters[j]];
			out.add(swapped.join(""));
		}
	}
	return [...out];
}

/** What to look up besides a word matched within `edits` Levenshtein edits, so that a swap counts as one edit. */
export interface TypoLookups {
	/** The word's swaps, each within `swapEdits` more edits: one swap, or one swap and (two edits allowed) one more typo. */
	swaps: string[];
	swapEdits: number;
	/** Two swaps, looked up exactly (two edits allowed). */
	doubleSwaps: string[];
}

/**
 * The lookups that make a word allowed `edits` edits tolerate swaps as Elasticsearch does: none for a
 * word too short for typos ("mgu" is not "mug"); with one edit, its swaps; with two, its swaps with one
 * more edit ("mesegner" for "messenger") and its double swaps.
 */
export function typoLookups(term: string, edits: number): TypoLookups {
	if (edits < 1) return { swaps: [], swapEdits: 0, doubleSwaps: [] };
	return { swaps: adjacentSwaps(term), swapEdits: edits - 1, doubleSwaps: edits >= 2 ? doubleSwaps(term) : [] };
}
