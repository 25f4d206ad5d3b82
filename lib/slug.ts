/** URL slugs for categories and products: lowercase ASCII words joined by dashes. */

const MAX_SLUG_LENGTH = 80;

/** "Crème Brûlée T-Shirt (XL)" → "creme-brulee-t-shirt-xl". */
export function slugify(text: string): string {
	return text
		.normalize("NFKD")
		.replace(/[\u0300-\u036f]/g, "")
		.toLowerCase()
		.replace(/&/g, " and ")
		.replace(/[^a-z0-9]+/g, "-")
		.replace(/^-+|-+$/g, "")
		.slice(0, MAX_SLUG_LENGTH)
		.replace(/-+$/g, "");
}

/** A slug is what slugify would keep unchanged. */
export function isSlug(value: string): boolean {
	return value.length > 0 && value.length <= MAX_SLUG_LENGTH && /^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(value);
}

/** `base`, or `base-2`, `base-3`, ... : the first one not in `taken`. */
export function uniqueSlug(base: string, taken: Iterable<string>): string {
	const used = new Set(taken);
	if (!used.has(base)) return base;
	for (let n = 2; ; n++) {
		const candidate = `${base}-${n}`;
		if (!used.has(candidate)) return candidate;
	}
}

/** Escapes a slug for an anchored regular expression (slugs carry no specials, but be safe). */
export function slugFamilyPattern(base: string): RegExp {
	return new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?:-\\d+)?$`);
}
