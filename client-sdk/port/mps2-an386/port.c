/* Port of tinyfed's firmware seams to the MPS2-AN386 board: the link is
 * UART0 (an Arm CMSDK APB UART), time comes from SysTick on the 25 MHz
 * system clock, and diagnostics go to the debugger through semihosting. */
#include <stdio.h>

#include "../port.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x000u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x004u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x008u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x010u))
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0x00FFFFFFu
#define SYSCLK_HZ 25000000u
#define TICKS_PER_MS (SYSCLK_HZ / 1000u)

static uint32_t last_cvr;
static uint32_t pending_ticks;
static uint32_t millis;

void tinyfed_port_init(void) {
  UART_BAUDDIV = SYSCLK_HZ / 115200u; /* the emulator ignores the rate */
  UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
  SYST_RVR = SYST_MASK;
  SYST_CVR = 0u;
  SYST_CSR = 5u; /* enabled, processor clock, no interrupt */
  last_cvr = SYST_CVR;
}

uint32_t tinyfed_port_millis(void) {
  /* The 24-bit counter counts down and wraps every 0.67 s: accumulate the
   * ticks elapsed since the last call. */
  const uint32_t now = SYST_CVR;
  pending_ticks += (last_cvr - now) & SYST_MASK;
  last_cvr = now;
  millis += pending_ticks / TICKS_PER_MS;
  pending_ticks %= TICKS_PER_MS;
  return millis;
}

int tinyfed_port_link_read(uint8_t *byte) {
  if ((UART_STATE & UART_STATE_RX_FULL) == 0u) return 0;
  *byte = (uint8_t)(UART_DATA & 0xFFu);
  return 1;
}

void tinyfed_port_link_write(const uint8_t *data, size_t length) {
  size_t i;
  for (i = 0; i < length; ++i) {
    while ((UART_STATE & UART_STATE_TX_FULL) != 0u) {
    }
    UART_DATA = data[i];
  }
}

void tinyfed_port_log(const char *line) {
  printf("%s\n", line);
  fflush(stdout);
}
