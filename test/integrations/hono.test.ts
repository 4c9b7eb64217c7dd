import { frameworkSuite } from './framework-suite.js'
import { honoFramework } from './frameworks.js'

await frameworkSuite(honoFramework)
