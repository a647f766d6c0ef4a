! Print drift, diffusion and noise of an exported surrogate through the Fortran module (used by
! the tests to compare the Fortran route with Python).
!
!   check_eval FILE MEMBER [STATES]    states from the text file STATES, else from stdin:
!                                      n, then n*dim numbers, state by state
!   check_eval FILE info               dim, members, format version and variable names
!
! Output per state k, every number as es24.16e3, matrices row by row (M_11 M_12 ... M_21 ...):
!   drift b_1 .. b_m
!   diffusion A_11 A_12 .. A_mm
!   noise S_11 S_12 .. S_mm           (lower-triangular: S_ij = 0 for j > i)
! Exit status 1 and a message on stderr on any error.
program check_eval
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: iso_fortran_env, only: error_unit, input_unit
  use multiscale_surrogate
  implicit none
  type(surrogate_t) :: s
  character(len=:), allocatable :: path, arg, errmsg
  integer :: member, n, m, ierr, k, i, unit, ios
  real(c_double), allocatable :: x(:, :), b(:, :), a(:, :, :), q(:, :, :)

  if (command_argument_count() < 2) call fail("usage: check_eval FILE MEMBER|info [STATES]")
  path = argument(1)
  arg = argument(2)
  call surrogate_open(s, path, ierr, errmsg)
  if (ierr /= 0) call fail(errmsg)
  m = surrogate_dim(s)

  if (arg == "info") then
    write (*, '(a, i0)') "dim ", m
    write (*, '(a, i0)') "members ", surrogate_members(s)
    write (*, '(a, i0)') "version ", surrogate_format_version()
    do i = 1, m
      write (*, '(a, i0, 2a)') "name ", i - 1, " ", surrogate_name(s, i)
    end do
    call surrogate_close(s)
    stop
  end if

  read (arg, *, iostat=ios) member
  if (ios /= 0) call fail("MEMBER must be an integer or 'info', got '" // arg // "'")
  unit = input_unit
  if (command_argument_count() >= 3) then
    open (newunit=unit, file=argument(3), status="old", action="read", iostat=ios)
    if (ios /= 0) call fail("cannot read the states file " // argument(3))
  end if
  read (unit, *, iostat=ios) n
  if (ios /= 0 .or. n < 0) call fail("cannot read the number of states")
  allocate (x(m, n), b(m, n), a(m, m, n), q(m, m, n))
  if (n > 0) then
    read (unit, *, iostat=ios) x
    if (ios /= 0) call fail("cannot read the states")
  end if
  if (unit /= input_unit) close (unit)

  call surrogate_drift(s, x, member, b, ierr, errmsg)
  if (ierr == 0) call surrogate_diffusion(s, x, member, a, ierr, errmsg)
  if (ierr == 0) call surrogate_noise(s, x, member, q, ierr, errmsg)
  if (ierr /= 0) call fail(errmsg)
  do k = 1, n
    write (*, '(a, *(1x, es24.16e3))') "drift", b(:, k)
    write (*, '(a, *(1x, es24.16e3))') "diffusion", transpose(a(:, :, k))
    write (*, '(a, *(1x, es24.16e3))') "noise", transpose(q(:, :, k))
  end do
  call surrogate_close(s)

contains

  subroutine fail(msg)
    character(len=*), intent(in) :: msg
    write (error_unit, '(2a)') "check_eval: error: ", msg
    call surrogate_close(s)
    stop 1
  end subroutine fail

  function argument(i) result(val)
    integer, intent(in) :: i
    character(len=:), allocatable :: val
    integer :: l
    call get_command_argument(i, length=l)
    allocate (character(len=l) :: val)
    if (l > 0) call get_command_argument(i, val)
  end function argument

end program check_eval
