! Print drift, diffusion and noise of an exported surrogate at states read from stdin, through
! the Fortran module (used by the tests to compare with Python).
!   check_eval FILE MEMBER < states     (stdin: n, then n*m numbers, state by state)
program check_eval
  use, intrinsic :: iso_c_binding, only: c_double
  use multiscale_surrogate
  implicit none
  type(surrogate_t) :: s
  character(len=4096) :: path, arg
  integer :: member, n, m, ierr, k
  real(c_double), allocatable :: x(:, :), b(:, :), a(:, :, :), q(:, :, :)
  call get_command_argument(1, path)
  call get_command_argument(2, arg)
  read (arg, *) member
  call surrogate_open(s, path, ierr)
  if (ierr /= 0) then
    write (0, '(2a)') "error: ", surrogate_last_error()
    stop 1
  end if
  m = surrogate_dim(s)
  read (*, *) n
  allocate (x(m, n), b(m, n), a(m, m, n), q(m, m, n))
  read (*, *) x
  call surrogate_drift(s, x, member, b, ierr)
  if (ierr == 0) call surrogate_diffusion(s, x, member, a, ierr)
  if (ierr == 0) call surrogate_noise(s, x, member, q, ierr)
  if (ierr /= 0) then
    write (0, '(2a)') "error: ", surrogate_last_error()
    stop 1
  end if
  do k = 1, n  ! matrices row by row, as the C example prints them
    write (*, '(a, *(1x, es24.16e3))') "drift", b(:, k)
    write (*, '(a, *(1x, es24.16e3))') "diffusion", transpose(a(:, :, k))
    write (*, '(a, *(1x, es24.16e3))') "noise", transpose(q(:, :, k))
  end do
  call surrogate_close(s)
end program check_eval
