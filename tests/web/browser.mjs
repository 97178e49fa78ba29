// Real headless Chromium with WebGPU on SwiftShader (CPU), driven by
// playwright-core with the system browser; never downloads a browser.
import { chromium } from "playwright-core";

export const FLAGS = [
  "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader",
  "--headless=new", "--no-sandbox", "--disable-background-networking",
];

export async function launch() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS, headless: true });
}

/** The same browser with WebGPU switched off, for the "no WebGPU" paths. */
export async function launchWithoutWebGpu() {
  const args = ["--disable-webgpu", "--headless=new", "--no-sandbox", "--disable-background-networking"];
  return chromium.launch({ executablePath: "/usr/bin/chromium", args, headless: true });
}

/**
 * The WebGPU browser with Chromium's fake camera (a synthetic video), and with
 * its permission prompt answered "allow" when `allow` is true. Without it, the
 * page gets no camera permission (Playwright's contexts grant none).
 */
export async function launchWithCamera({ allow }) {
  const args = [...FLAGS, "--use-fake-device-for-media-stream", ...(allow ? ["--use-fake-ui-for-media-stream"] : [])];
  return chromium.launch({ executablePath: "/usr/bin/chromium", args, headless: true });
}
