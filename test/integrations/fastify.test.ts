import { frameworkSuite } from './framework-suite.js'
import { fastifyFramework } from './frameworks.js'

await frameworkSuite(fastifyFramework)
