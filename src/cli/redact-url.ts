/**
 * Shows a database URL without its secrets: the password and any `password` query parameter
 * become `***`. A string `URL` cannot parse is reduced to its scheme, since the password cannot
 * be found in it reliably.
 *
 * @example
 * ```ts
 * redactUrl('postgres://app:s3cret@db/app') // 'postgres://app:***@db/app'
 * ```
 */
export function redactUrl(url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]
    return scheme === undefined ? '(unparsable URL)' : `${scheme}://(unparsable URL)`
  }
  if (parsed.password !== '') parsed.password = '***'
  for (const key of [...parsed.searchParams.keys()]) {
    if (/^pass(word)?$/i.test(key)) parsed.searchParams.set(key, '***')
  }
  return parsed.toString()
}
