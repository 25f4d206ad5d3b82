/**
 * Typo tolerance that plain Levenshtein matching (minisearch) lacks. Swapping two neighbouring
 * letters ("candel" for "candle") is the most common typo; Elasticsearch counts it as one edit
 * (`fuzzy_transpositions`), Levenshtein as two, more than a short word is allowed. So a word
 * allowed one edit is also looked up as each of its swaps.
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
 * The swaps to look up, exactly, besides a word matched within `edits` Levenshtein edits: only
 * when it is allowed one edit. Too short for typos means no swaps either, and two edits already
 * cover one swap (what they miss, a swap plus another typo, would cost a fuzzy lookup per swap).
 */
export function typoSwaps(term: string, edits: number): string[] {
	return edits === 1 ? adjacentSwaps(term) : [];
}
