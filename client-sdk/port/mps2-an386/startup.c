/* Start-up code for the Arm MPS2-AN386 board (Cortex-M4) as qemu-system-arm
 * emulates it: the vector table at address 0, and a reset handler that
 * copies initialised data from flash to RAM and enters newlib's C start-up
 * (which clears .bss, sets up semihosting when linked with rdimon.specs,
 * and calls main). Faults park the core in a loop. */
#include <stdint.h>

extern uint32_t __StackTop;
extern uint32_t __etext, __data_start__, __data_end__;
extern void _start(void);

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void) {
  const uint32_t *src = &__etext;
  uint32_t *dst = &__data_start__;
  while (dst < &__data_end__) *dst++ = *src++;
  _start();
  for (;;) {
  }
}

void Fault_Handler(void) {
  for (;;) {
  }
}

/* Initial stack pointer, reset, NMI, hard fault, memory management, bus and
 * usage faults, 4 reserved, SVCall, debug monitor, reserved, PendSV, SysTick. */
__attribute__((section(".vectors"), used)) static const void *const kVectors[16] = {
    &__StackTop,           (const void *)Reset_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, 0, 0, 0, 0, (const void *)Fault_Handler,
    (const void *)Fault_Handler, 0, (const void *)Fault_Handler, (const void *)Fault_Handler,
};
