/** URL slugs for categories and products: lowercase ASCII words joined by dashes. */

/** What the slug rule of the catalog actions accepts (lib/catalog-rules.ts slugRule), so every generated slug is one an admin can send back. */
export const MAX_SLUG_LENGTH = 80;

/** The longest number suffix ("-12345678901") a family is searched for: far beyond any real run of one name. */
const MAX_SUFFIX_LENGTH = 12;

/** Cut to `length`, without a dash left dangling at the end. */
function cut(slug: string, length: number): string {
	return slug.slice(0, length).replace(/-+$/g, "");
}

/** Latin letters that no accent stripping reduces to ASCII ("Straße" would become "stra-e"). */
const LATIN_LETTERS: Record<string, string> = { ß: "ss", ẞ: "ss", æ: "ae", Æ: "ae", ø: "o", Ø: "o", œ: "oe", Œ: "oe", ł: "l", Ł: "l", đ: "d", Đ: "d", ð: "d", Ð: "d", þ: "th", Þ: "th", ı: "i", ħ: "h", Ħ: "h" };

/** The Latin letters above spelled out in ASCII: "Ærø Straße" → "aero strasse" (other text unchanged). */
export function spellOutLatin(text: string): string {
	return text.replace(/[ßẞæÆøØœŒłŁđĐðÐþÞıħĦ]/g, (c) => LATIN_LETTERS[c]);
}

/** Lower case, accents stripped, the Latin letters above spelled out: "Crème Ærø" → "creme aero". */
export function foldLatin(text: string): string {
	return spellOutLatin(text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "")).toLowerCase();
}

/** "Crème Brûlée T-Shirt (XL)" → "creme-brulee-t-shirt-xl"; "Straße Ærø" → "strasse-aero". */
export function slugify(text: string): string {
	return cut(
		foldLatin(text)
			.replace(/&/g, " and ")
			.replace(/[^a-z0-9]+/g, "-")
			.replace(/^-+|-+$/g, ""),
		MAX_SLUG_LENGTH,
	);
}

/** A slug is what slugify would keep unchanged. */
export function isSlug(value: string): boolean {
	return value.length > 0 && value.length <= MAX_SLUG_LENGTH && /^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(value);
}

/** `base` numbered `n`: "tee-2"; a long base is cut so that the number still fits in MAX_SLUG_LENGTH. */
export function numberedSlug(base: string, n: number): string {
	const suffix = `-${n}`;
	return `${cut(base, MAX_SLUG_LENGTH - suffix.length)}${suffix}`;
}

/** `base`, or `base-2`, `base-3`, ... (each within MAX_SLUG_LENGTH): the first one not in `taken`. */
export function uniqueSlug(base: string, taken: Iterable<string>): string {
	const used = new Set(taken);
	if (!used.has(base)) return base;
	for (let n = 2; ; n++) {
		const candidate = numberedSlug(base, n);
		if (!used.has(candidate)) return candidate;
	}
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Every slug uniqueSlug(base, ...) could pick (anchored; slugs carry no specials, but be safe): what
 * to read from the store as `taken`. A base short enough that no number needs cutting it is the
 * family exactly (`tee`, `tee-2`, not `tee-shirt`); a longer base's numbered slugs are cut to
 * different lengths, so its pattern is every slug starting with the shortest of those cuts (a few
 * more rows to read, never one missed).
 */
export function slugFamilyPattern(base: string): RegExp {
	if (base.length + MAX_SUFFIX_LENGTH <= MAX_SLUG_LENGTH) return new RegExp(`^${escape(base)}(?:-\\d+)?$`);
	return new RegExp(`^${escape(cut(base, MAX_SLUG_LENGTH - MAX_SUFFIX_LENGTH))}`);
}
