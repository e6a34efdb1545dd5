/** Label selectors (§0.5): every key/value of the selector is present in the labels. Empty selects all. */
export function labelsSelect(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const key in selector) {
    if (!Object.hasOwn(labels, key) || labels[key] !== selector[key]) return false;
  }
  return true;
}
