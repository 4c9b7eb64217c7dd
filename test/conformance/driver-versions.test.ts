import { describe, expect, it } from 'vitest'

/**
 * What .ci/driver-versions.sh asks for: `name@version` pairs. Without it the suites run on the
 * drivers in package-lock, and this file has nothing to check.
 */
const expected = (process.env.LIFEGUARD_DRIVER_VERSIONS ?? '')
  .split(',')
  .filter((pair) => pair !== '')
  .map((pair) => {
    const at = pair.lastIndexOf('@')
    return { name: pair.slice(0, at), version: pair.slice(at + 1) }
  })

describe.skipIf(expected.length === 0)('the driver versions under test', () => {
  it.each(expected)(
    '$name resolves to $version for src/ and test/ alike',
    async ({ name, version }) => {
      // Through vitest.config.ts's alias, as every import of the driver in src/ and test/ goes.
      const manifest = (await import(`${name}/package.json`, { with: { type: 'json' } })) as {
        default: { version: string }
      }
      expect(manifest.default.version).toBe(version)
    },
  )
})
